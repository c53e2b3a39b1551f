"""scripts/install into a scratch prefix and bindir: the installed commands, real mounts made
with them (directly, with `mount -t fuse.ifcbfs` and from an fstab line), and --uninstall,
which must leave the scratch tree exactly as it was.

pip fetches the dependencies from the package index (or its cache), as on a user's machine.
"""
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ifcbfs.synth import write_dataset
from mounting import require_fuse

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install"
OLD_LINK = "/old/checkout/.venv/bin/ifcbfs"  # what an earlier install-systemd --bin left


def snapshot(top) -> dict:
    """Every path under top: its kind, mode, link target or content hash."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for path in [folder] + [os.path.join(folder, n) for n in dirs + files]:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", oct(st.st_mode))
            else:
                what = ("file", oct(st.st_mode), hashlib.sha256(Path(path).read_bytes()).hexdigest())
            out[os.path.relpath(path, top)] = what
    return out


def clean_env() -> dict:
    """The environment of a new shell: nothing pointing into this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    return env


def install(*args, cwd=None):
    result = subprocess.run([str(INSTALL), *map(str, args)], capture_output=True, text=True,
                            env=clean_env(), cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr.splitlines()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """scripts/install into TMP/scratch/opt/vendor/ifcbfs with links in TMP/scratch/bin, which
    already holds another tool and a link left by an older install."""
    scratch = tmp_path_factory.mktemp("install") / "scratch"
    bindir, prefix = scratch / "bin", scratch / "opt" / "vendor" / "ifcbfs"
    bindir.mkdir(parents=True)
    (scratch / "opt").mkdir()
    (scratch / "opt" / "other").write_text("another program's file\n")
    (bindir / "other-tool").write_text("#!/bin/sh\n")
    (bindir / "ifcbfs").symlink_to(OLD_LINK)
    before = snapshot(scratch)
    lines = install("--prefix", prefix, "--bindir", bindir, cwd=scratch.parent)
    yield type("Installed", (), {"scratch": scratch, "bindir": bindir, "prefix": prefix,
                                 "before": before, "lines": lines})
    if (prefix / "install-manifest").exists():
        install("--uninstall", "--prefix", prefix)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("source") / "data"
    write_dataset(root, n_bins=2, n_triggers=40, seed=4, style="mixed", mtime=1_700_000_000)
    return root


def run_installed(installed, *args):
    return subprocess.run([str(installed.bindir / args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, env=clean_env(), cwd=installed.scratch, timeout=60)


def test_one_line_per_step_and_links_to_the_prefix(installed):
    assert all(line.startswith(("install: ", "setup: ")) for line in installed.lines), installed.lines
    assert any(line.startswith("install: virtualenv: creating") for line in installed.lines)
    for name in ("ifcbfs", "ifcbfs-export"):
        assert os.readlink(installed.bindir / name) == str(installed.prefix / "bin" / name)
    assert any(OLD_LINK in line for line in installed.lines)


def test_installed_commands_run_from_the_prefix_not_the_checkout(installed):
    result = run_installed(installed, "ifcbfs", "--help")
    assert result.returncode == 0 and "usage: ifcbfs SOURCE MOUNTPOINT" in result.stdout and "umask=" in result.stdout
    result = run_installed(installed, "ifcbfs-export", "--help")
    assert result.returncode == 0 and "usage: ifcbfs-export" in result.stdout
    where = subprocess.run([str(installed.prefix / "bin" / "python"), "-c", "import ifcbfs; print(ifcbfs.__file__)"],
                           capture_output=True, text=True, env=clean_env(), cwd="/", check=True).stdout
    assert where.startswith(str(installed.prefix) + "/")


def test_a_second_run_changes_nothing(installed):
    files = snapshot(installed.prefix)
    lines = install("--prefix", installed.prefix, "--bindir", installed.bindir)
    assert any(line.startswith("install: ifcbfs: up to date") for line in lines), lines
    assert not any("creating" in line or "installing" in line for line in lines), lines
    assert snapshot(installed.prefix) == files


@pytest.mark.mount
def test_the_installed_command_mounts(installed, source, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = run_installed(installed, "ifcbfs", source, mnt)  # returns once the mount serves files
    assert result.returncode == 0, result.stderr
    try:
        png = next(mnt.rglob("*.png"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(png.read_bytes()) == png.stat().st_size
        assert (png.stat().st_mode & 0o7777, png.parent.stat().st_mode & 0o7777) == (0o644, 0o755)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)


MOUNT_T_AND_FSTAB = r"""
set -eu
trap 'umount -l "$MNT1" 2>/dev/null || true; umount -l "$MNT2" 2>/dev/null || true' EXIT
# This process's own view: the scratch bindir as /usr/local/bin, a scratch fstab as /etc/fstab.
mount --bind "$BINDIR" /usr/local/bin
mount --bind "$FSTAB" /etc/fstab
mount -t fuse.ifcbfs "$SRC" "$MNT1" -o ro,umask=027
stat -c 'mount-t %a' "$(find "$MNT1" -name '*.png' | head -n 1)"
mount "$MNT2"
echo "fstab $(find "$MNT2" -name hdr.json | wc -l)"
umount "$MNT1"
umount "$MNT2"
"""


@pytest.mark.mount
def test_mount_t_and_an_fstab_line_find_the_installed_command(installed, source, tmp_path):
    """mount(8) clears PATH and mount.fuse3 starts `ifcbfs` from the default PATH, so the
    scratch bindir stands in for /usr/local/bin in a private mount namespace."""
    require_fuse()
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to give mount(8) a private /usr/local/bin and /etc/fstab")
    mnt1, mnt2 = tmp_path / "m1", tmp_path / "m2"
    mnt1.mkdir(), mnt2.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{source}  {mnt2}  fuse.ifcbfs  ro,allow_other,layout=mirror,_netdev  0 0\n")
    env = dict(clean_env(), BINDIR=str(installed.bindir), FSTAB=str(fstab), SRC=str(source),
               MNT1=str(mnt1), MNT2=str(mnt2))
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", MOUNT_T_AND_FSTAB],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\n")[:2] == ["mount-t 640", "fstab 2"], result.stdout + result.stderr


def test_uninstall_removes_what_install_added_and_nothing_else(installed):
    assert installed.prefix.is_dir() and snapshot(installed.scratch) != installed.before
    lines = install("--uninstall", "--prefix", installed.prefix, "--bindir", installed.bindir)
    assert snapshot(installed.scratch) == installed.before, lines
    assert os.readlink(installed.bindir / "ifcbfs") == OLD_LINK
    again = install("--uninstall", "--prefix", installed.prefix)
    assert any("nothing to remove" in line for line in again)
    assert snapshot(installed.scratch) == installed.before


def test_refuses_a_prefix_it_did_not_make_and_a_file_in_the_way(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "data").write_text("x")
    result = subprocess.run([str(INSTALL), "--prefix", tmp_path / "busy", "--bindir", tmp_path / "bin"],
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode != 0 and "not made by scripts/install" in result.stderr
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ifcbfs-export").write_text("mine")
    result = subprocess.run([str(INSTALL), "--prefix", tmp_path / "new", "--bindir", tmp_path / "bin"],
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode != 0 and "is not a link" in result.stderr
    assert not (tmp_path / "new").exists() and (tmp_path / "bin" / "ifcbfs-export").read_text() == "mine"
