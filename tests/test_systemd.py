"""The systemd units in systemd/ and scripts/install-systemd.

`systemd-analyze verify` checks the unit files (syntax, unit name against
Where=, executables exist).  The units name /usr/local/bin/ifcbfs (where
scripts/install links the command), so they are verified as installed by
`scripts/install-systemd --prefix TMP --bin BIN`.
"""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALL = ROOT / "scripts" / "install-systemd"
UNIT_SUFFIXES = (".service", ".mount", ".automount", ".socket", ".timer", ".path", ".target")
TEMPLATE = "ifcbfs@.service"
MOUNT_EXAMPLE = "srv-ifcb\\x2dimages.mount"

# Options that give the service its own mount namespace (mounts made MS_SLAVE):
# the FUSE mount would then be invisible outside the service.  systemd.exec(5).
MOUNT_NAMESPACE_OPTIONS = (
    "PrivateMounts", "PrivateTmp", "PrivateDevices", "ProtectSystem", "ProtectHome",
    "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
    "ProcSubset", "RootDirectory", "RootImage", "MountFlags", "MountAPIVFS",
    "LogsDirectory", "StateDirectory", "CacheDirectory", "RuntimeDirectory",
    "ConfigurationDirectory", "DynamicUser",
)


def unit_files():
    return sorted(p.name for p in UNITS.iterdir() if p.suffix in UNIT_SUFFIXES)


def require(tool):
    """Path of `tool`; fail in CI, skip locally, when it is missing."""
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} not found (install systemd to check the unit files)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def ifcbfs_binary(tmp_path):
    """The installed ifcbfs entry point, or an executable stand-in for verify."""
    for candidate in (Path(sys.executable).parent / "ifcbfs", shutil.which("ifcbfs")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    stub = tmp_path / "bin" / "ifcbfs"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return stub


def run_install(*args):
    return subprocess.run([str(INSTALL), *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def installed(tmp_path):
    """Install into TMP/root with one instance, 'lab'; return a namespace of paths."""
    prefix = tmp_path / "root"
    binary = ifcbfs_binary(tmp_path)
    args = ["--prefix", prefix, "--bin", binary, "--instance", "lab",
            "--source", "/data/ifcb", "--mountpoint", "/srv/ifcb-images",
            "--options", "ro,allow_other,layout=mirror"]
    result = run_install(*args)
    assert result.returncode == 0, result.stderr + result.stdout
    return type("Installed", (), {
        "prefix": prefix, "bin": binary, "args": args, "output": result.stdout,
        "unitdir": prefix / "etc/systemd/system", "confdir": prefix / "etc/ifcbfs",
    })


def verify(unitdir, *units):
    """Run systemd-analyze verify; return (returncode, output lines about our units)."""
    analyze = require("systemd-analyze")
    cmd = [analyze, "verify", "--man=no"]
    helptext = subprocess.run([analyze, "--help"], capture_output=True, text=True).stdout
    if "--recursive-errors" in helptext:
        cmd.append("--recursive-errors=no")   # do not judge the host's own units
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="info", SYSTEMD_LOG_COLOR="0",
               SYSTEMD_PAGER="", SYSTEMD_UNIT_PATH=f"{unitdir}:")
    result = subprocess.run(cmd + [str(u) for u in units], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    output = (result.stdout + result.stderr).splitlines()
    ours = [line for line in output
            if str(unitdir) in line or any(Path(str(u)).name in line for u in units)
            or "ifcbfs" in line]
    return result.returncode, ours, output


def test_units_present():
    assert TEMPLATE in unit_files()
    assert MOUNT_EXAMPLE in unit_files()


@pytest.mark.parametrize("name", unit_files())
def test_unit_verifies(installed, tmp_path, name):
    installed_copy = installed.unitdir / name
    if installed_copy.exists():
        path = installed_copy
    else:
        copydir = tmp_path / "units"
        copydir.mkdir()
        path = copydir / name
        shutil.copyfile(UNITS / name, path)
    code, ours, output = verify(path.parent, path)
    assert code == 0, "\n".join(output)
    assert ours == [], "\n".join(ours)


def test_instance_with_dropin_verifies(installed):
    dropin = installed.unitdir / "ifcbfs@lab.service.d" / "10-mounts.conf"
    assert dropin.is_file()
    code, ours, output = verify(installed.unitdir, "ifcbfs@lab.service")
    assert code == 0, "\n".join(output)
    assert ours == [], "\n".join(ours)


def test_verify_catches_a_bad_setting(tmp_path):
    """The checks above would notice a typo: an unknown key is reported."""
    bad = tmp_path / "units" / "ifcbfs-typo.service"
    bad.parent.mkdir()
    bad.write_text("[Service]\nType=notify\nExecStart=/bin/true\nNotifyAcess=main\n")
    code, ours, output = verify(bad.parent, bad)
    assert any("NotifyAcess" in line for line in ours), "\n".join(output)


def test_mount_unit_name_matches_where():
    text = (UNITS / MOUNT_EXAMPLE).read_text()
    where = re.search(r"^Where=(.+)$", text, re.M).group(1).strip()
    assert where == "/srv/ifcb-images"
    assert re.search(r"^Type=fuse\.ifcbfs$", text, re.M)
    assert re.search(r"^What=/data/ifcb$", text, re.M)
    escape = shutil.which("systemd-escape")
    if escape:
        name = subprocess.run([escape, "--path", "--suffix=mount", where],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert name == MOUNT_EXAMPLE


def settings(text):
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)=(.*)$", text, re.M)}


def test_template_keeps_the_mount_visible():
    """No setting that would put the FUSE mount in a private mount namespace."""
    unit = settings((UNITS / TEMPLATE).read_text())
    found = sorted(set(unit) & set(MOUNT_NAMESPACE_OPTIONS))
    assert found == [], f"these create a private mount namespace: {found}"
    assert unit["Type"] == "notify"
    assert unit["NotifyAccess"] == "main"
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["EnvironmentFile"] == "/etc/ifcbfs/%i.conf"
    assert unit["ExecStart"] == "/usr/local/bin/ifcbfs ${SOURCE} ${MOUNTPOINT} -f -o recover,${OPTIONS}"
    assert "ExecStop" not in unit  # it would also run after a crash, and unmount: an empty folder
    assert "User" not in unit   # root: see the comment on NoNewPrivileges=


def test_install_writes_files_with_rewritten_paths(installed):
    unit = (installed.unitdir / TEMPLATE).read_text()
    assert f"\nExecStart={installed.bin} ${{SOURCE}} ${{MOUNTPOINT}} -f -o recover,${{OPTIONS}}\n" in unit
    assert "/usr/local/bin/ifcbfs" not in unit.replace("ExecStart=", "")
    # everything else is the template as shipped
    shipped = (UNITS / TEMPLATE).read_text()
    def strip(text):
        return [line for line in text.splitlines() if not line.startswith("ExecStart=")]
    assert strip(unit) == strip(shipped)

    example = installed.confdir / "example.conf"
    assert example.read_text() == (UNITS / "ifcbfs.conf.example").read_text()

    assert not (installed.prefix / "usr").exists()  # the command on PATH is scripts/install's

    shipped_conf = settings(example.read_text())
    assert {"SOURCE", "MOUNTPOINT", "OPTIONS"} <= set(shipped_conf)
    conf = settings((installed.confdir / "lab.conf").read_text())
    assert conf == {"SOURCE": "/data/ifcb", "MOUNTPOINT": "/srv/ifcb-images",
                    "OPTIONS": "ro,allow_other,layout=mirror"}

    dropin = (installed.unitdir / "ifcbfs@lab.service.d" / "10-mounts.conf").read_text()
    assert "[Unit]\nRequiresMountsFor=/data/ifcb /srv\n" in dropin
    assert "not running systemctl daemon-reload" in installed.output


def test_install_is_idempotent(installed):
    before = {p: p.read_bytes() for p in installed.prefix.rglob("*") if p.is_file()}
    example = installed.confdir / "example.conf"
    example.write_text(example.read_text() + "# local edit\n")
    result = run_install(*installed.args)
    assert result.returncode == 0, result.stderr
    after = {p: p.read_bytes() for p in installed.prefix.rglob("*") if p.is_file()}
    assert set(after) == set(before)
    for path, data in before.items():
        if path != example:
            assert after[path] == data, path
    assert after[example].endswith(b"# local edit\n")   # an existing config is kept
    assert not re.search(r"^install-systemd: (installed|linked) ", result.stdout, re.M), result.stdout


def test_without_bin_it_uses_the_installed_command(tmp_path):
    """/usr/local/bin/ifcbfs (scripts/install's link) if there, else ifcbfs on PATH, else a
    clear error that names scripts/install."""
    system = Path("/usr/local/bin/ifcbfs")
    stubdir = tmp_path / "stub"
    stubdir.mkdir()
    (stubdir / "ifcbfs").write_text("#!/bin/sh\nexit 0\n")
    (stubdir / "ifcbfs").chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path / 'empty'}:/usr/bin:/bin")
    args = [str(INSTALL), "--prefix", str(tmp_path / "root")]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    if os.access(system, os.X_OK):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and "run scripts/install first" in result.stderr
        env["PATH"] = f"{stubdir}:{env['PATH']}"
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
    unit = (tmp_path / "root/etc/systemd/system" / TEMPLATE).read_text()
    want = system if os.access(system, os.X_OK) else stubdir / "ifcbfs"
    assert f"\nExecStart={want} ${{SOURCE}}" in unit


def test_install_refuses_bad_arguments(tmp_path):
    prefix = tmp_path / "root"
    binary = ifcbfs_binary(tmp_path)
    assert run_install("--prefix", prefix, "--bin", tmp_path / "missing").returncode != 0
    bad_instance = run_install("--prefix", prefix, "--bin", binary, "--instance", "a/b",
                               "--source", "/d", "--mountpoint", "/m")
    assert bad_instance.returncode != 0 and "instance" in bad_instance.stderr
    relative = run_install("--prefix", prefix, "--bin", binary, "--instance", "x",
                           "--source", "data", "--mountpoint", "/m")
    assert relative.returncode != 0 and "absolute" in relative.stderr
    assert not (prefix / "etc/ifcbfs/x.conf").exists()
