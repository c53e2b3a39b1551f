"""Permissions through real mounts: who may read the mount, modes, and source files the daemon
may not read. Other users are acted as with `setpriv` (uid/gid 65534, nobody), which needs root."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from ifcbfs.core.bin import Bin
from ifcbfs.core.source import DataRoot
from ifcbfs.synth import write_bin, write_dataset
from mounting import IFCBFS, mounted, require_fuse

pytestmark = pytest.mark.mount

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
# root without the capabilities that let it read any file: mode 000 stops it like anyone else
NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
REPO = Path(__file__).resolve().parents[1]


def unavailable(reason: str) -> None:
    """Skip here, fail in CI (where every test must run)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_setpriv() -> None:
    require_fuse()
    if os.geteuid() != 0:
        unavailable("acting as another user (setpriv --reuid) needs root; run these tests as root")
    if not shutil.which("setpriv"):
        unavailable("setpriv is missing (util-linux)")


def run(prefix: list[str], *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=60)


def is_mounted(path, mounts: str = "/proc/self/mounts") -> bool:
    """From /proc/.../mounts: os.path.ismount cannot see a mount another user may not enter."""
    want = os.path.realpath(path)
    with open(mounts) as f:
        return any(line.split()[1].replace("\\040", " ") == want for line in f)


def mount_options(path, mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    want = os.path.realpath(path)
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if fields[4] == want:
                sep = fields.index("-")
                return set(fields[5].split(",")) | set(fields[sep + 3].split(","))
    return set()


@pytest.fixture
def shared():
    """A folder every user may enter (pytest's own tmp folder is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="ifcbfs-perm-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        if is_mounted(base / "mnt"):
            subprocess.run(["fusermount3", "-uz", str(base / "mnt")], capture_output=True)
        for folder, dirs, files in os.walk(base):
            for name in dirs:
                os.chmod(os.path.join(folder, name), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def source_tree(base: Path) -> tuple[Path, list[str]]:
    src = base / "src"
    ids = write_dataset(src, n_bins=4, n_triggers=40, seed=5, style="mixed")
    for folder, dirs, files in os.walk(src):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return src, ids


def expected_files(src: Path) -> dict[str, bytes]:
    """Mount path -> bytes, from the core (as root: every file readable)."""
    out = {}
    for files in DataRoot(str(src)).walk():
        model = Bin.load(files)
        folder = f"{files.folder}/{files.bin_id}" if files.folder else str(files.bin_id)
        for entry in model.entries:
            out[f"{folder}/{entry.name}"] = model.read(entry.name)
    return out


# --- who may read a mount -------------------------------------------------------------------
def test_without_allow_other_another_user_is_refused(shared):
    require_setpriv()
    src, ids = source_tree(shared)
    some_source = next(src.rglob("*.hdr"))
    assert run(AS_NOBODY, "cat", str(some_source)).returncode == 0  # the source itself is readable
    with mounted(src, shared / "mnt") as m:
        png = sorted(m.path.rglob("*.png"))[0]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the owner reads
        for cmd in (["cat", str(png)], ["ls", str(m.path)], ["stat", str(m.path)], ["ls", str(png.parent)]):
            done = run(AS_NOBODY, *cmd)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (cmd, done)
        assert "allow_other" not in mount_options(m.path)


def test_with_allow_other_others_read_modes_enforced_and_nothing_is_writable(shared):
    require_setpriv()
    src, ids = source_tree(shared)
    want = expected_files(src)
    with mounted(src, shared / "mnt", "allow_other") as m:
        opts = mount_options(m.path)
        assert {"allow_other", "default_permissions", "ro"} <= opts, opts
        name = sorted(n for n in want if n.endswith(".png"))[0]
        png, folder = m.path / name, (m.path / name).parent
        done = subprocess.run(AS_NOBODY + ["cat", str(png)], capture_output=True, timeout=60)
        assert done.returncode == 0 and done.stdout == want[name], done.stderr
        listing = run(AS_NOBODY, "ls", str(folder))
        assert listing.returncode == 0 and sorted(listing.stdout.split()) == sorted(
            n.rpartition("/")[2] for n in want if n.startswith(name.rpartition("/")[0] + "/"))
        modes = run(AS_NOBODY, "stat", "-c", "%a %U", str(png), str(folder), str(m.path))
        assert modes.stdout.split("\n")[:3] == ["644 root", "755 root", "755 root"], modes
        for cmd, error in ((["sh", "-c", f"echo x >> {png}"], "Read-only file system"),
                           (["touch", str(folder / "new")], "Read-only file system"),
                           (["mkdir", str(folder / "new")], "Read-only file system"),
                           (["rm", "-f", str(png)], "Read-only file system"),
                           ([str(png)], "Permission denied")):  # 0644: not executable, for anyone
            done = run(AS_NOBODY, *cmd)
            assert done.returncode != 0 and error in done.stderr, (cmd, done)
        # the same for root, the owner: the mount is read-only for everyone
        with pytest.raises(OSError) as err:
            open(png, "ab")
        assert err.value.errno == errno.EROFS
        assert png.read_bytes() == want[name]


# --- source files the daemon may not read ----------------------------------------------------
READER = r"""
import hashlib, json, os, sys
out = {}
def walk(path, rel):
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        out[rel or "."] = ["listdir", err.errno]
        return
    for name in names:
        p, r = os.path.join(path, name), f"{rel}/{name}" if rel else name
        try:
            st = os.stat(p)
        except OSError as err:
            out[r] = ["stat", err.errno]
            continue
        if st.st_mode & 0o040000:
            walk(p, r)
            continue
        try:
            with open(p, "rb") as f:
                data = f.read()
            out[r] = ["ok", st.st_size, len(data), hashlib.sha256(data).hexdigest()]
        except OSError as err:
            out[r] = ["read", err.errno]
for _ in range(int(sys.argv[2])):
    out.clear()
    walk(sys.argv[1], "")
print(json.dumps(out))
"""


def locked_source(base: Path) -> dict:
    """A source tree readable by nobody except: one bin's .adc, one's .hdr, one's .roi (mode 000)
    and one day folder (mode 000)."""
    src, ids = source_tree(base)
    found = {str(f.bin_id): f for f in DataRoot(str(src)).walk()}
    d_ids = [i for i in ids if i.startswith("D")]
    i_ids = [i for i in ids if i.startswith("IFCB")]
    locked = {"adc": d_ids[0], "hdr": i_ids[0], "roi": d_ids[1]}
    for ext, bin_id in locked.items():
        os.chmod(getattr(found[bin_id], ext).path, 0)
    write_bin(src / "locked" / "D20240605", "D20240605T000000_IFCB124", 30, seed=9)
    os.chmod(src / "locked", 0o755)
    for p in (src / "locked" / "D20240605").iterdir():
        os.chmod(p, 0o644)
    os.chmod(src / "locked" / "D20240605", 0)
    paths = {ext: f"{found[b].folder}/{b}" for ext, b in locked.items()}
    return {"src": src, "ids": ids, "locked": locked, "paths": paths, "found": found}


def check_unreadable(tree: dict, seen: dict, want: dict[str, bytes]) -> None:
    paths = tree["paths"]
    assert seen[paths["adc"]] == ["listdir", errno.EACCES], seen.get(paths["adc"])
    assert seen[paths["hdr"]] == ["listdir", errno.EACCES], seen.get(paths["hdr"])
    assert seen["locked/D20240605"] == ["listdir", errno.EACCES], seen.get("locked/D20240605")
    roi_bin = paths["roi"]
    roi_files = {k: v for k, v in seen.items() if k.startswith(roi_bin + "/")}
    pngs = [k for k in roi_files if k.endswith(".png")]
    assert pngs and all(roi_files[k] == ["read", errno.EACCES] for k in pngs), {k: roi_files[k] for k in pngs[:3]}
    for name in ("hdr.json", "adc.csv"):
        data = want[f"{roi_bin}/{name}"]
        assert roi_files[f"{roi_bin}/{name}"] == ["ok", len(data), len(data), hashlib.sha256(data).hexdigest()]
    closed = [*paths.values(), "locked/D20240605"]
    others = {k: v for k, v in want.items() if not any(k.startswith(p + "/") for p in closed)}
    assert len(others) > 20
    for name, data in others.items():
        assert seen.get(name) == ["ok", len(data), len(data), hashlib.sha256(data).hexdigest()], name
    served = {k for k, v in seen.items() if v[0] == "ok"}
    assert served <= set(want)


def one_line_per_bad_bin(log: str, tree: dict) -> None:
    for bin_id in tree["locked"].values():
        lines = [line for line in log.splitlines() if bin_id in line]
        assert len(lines) == 1, (bin_id, lines)
    assert sum("D20240605" in line for line in log.splitlines()) == 1, log
    for bin_id in set(tree["ids"]) - set(tree["locked"].values()):
        assert bin_id not in log, log


def test_files_root_without_dac_override_cannot_read_give_eacces_for_their_bin_only(shared):
    """The daemon as root but without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: mode 000 stops it."""
    require_setpriv()
    tree = locked_source(shared)
    probe = run(NO_DAC, "cat", getattr(tree["found"][tree["locked"]["adc"]], "adc").path)
    if probe.returncode == 0 or "Permission denied" not in probe.stderr:
        unavailable(f"cannot drop CAP_DAC_OVERRIDE with setpriv here: {probe.stderr.strip()}")
    want = expected_files(tree["src"])
    mnt = shared / "mnt"
    mnt.mkdir()
    log = shared / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(NO_DAC + IFCBFS + [str(tree["src"]), str(mnt), "-f"], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_mounted(proc, mnt, log)
        done = run([], sys.executable, "-c", READER, str(mnt), "3")
        assert done.returncode == 0, done.stderr
        check_unreadable(tree, json.loads(done.stdout), want)
        assert proc.poll() is None, log.read_text()
    finally:
        stop(proc, mnt)
    one_line_per_bad_bin(log.read_text(), tree)


def nobody_python() -> list[str] | str:
    """The command that runs, as nobody, a Python with pyfuse3, trio, Pillow and ifcbfs
    importable (the test's own interpreter may live where nobody may not go); or why there is none."""
    paths = sysconfig.get_paths()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(REPO), paths["purelib"], paths["platlib"]]))}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for exe in dict.fromkeys([sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}",
                              f"/usr/local/bin/{version}"]):
        if not os.path.exists(exe):
            continue
        cmd = AS_NOBODY + ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] + [exe]
        done = run(cmd, "-c", "import pyfuse3, trio, PIL.Image, ifcbfs.cli")
        if done.returncode == 0:
            return cmd
        tried.append(f"{exe}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return "no Python that nobody may run imports ifcbfs (" + "; ".join(tried) + ")"


def require_user_mounts() -> list[str]:
    """What a FUSE mount by nobody needs besides /dev/fuse: the setuid fusermount3 and a Python
    nobody may run; a skip (a failure in CI) that says what is missing."""
    require_setpriv()
    helper = shutil.which("fusermount3")
    st = os.stat(helper)
    if not (st.st_mode & stat.S_ISUID and st.st_uid == 0):
        unavailable(f"{helper} is not setuid root (mode {stat.filemode(st.st_mode)}): "
                    "users other than root cannot mount FUSE")
    python = nobody_python()
    if isinstance(python, str):
        unavailable(python)
    return python


class UserMounts:
    """Where nobody can open /dev/fuse: this machine when its /dev/fuse lets everyone open it (as
    distributions ship it), else a private mount namespace whose /dev/fuse is a crw-rw-rw- node
    of the same device (the machine's own node is not touched). `prefix` runs a command there."""

    def __init__(self, base: Path):
        self.prefix: list[str] = []
        self.mounts = "/proc/self/mounts"
        self.holder: subprocess.Popen | None = None
        if run(AS_NOBODY, "sh", "-c", "test -r /dev/fuse && test -w /dev/fuse").returncode == 0:
            return
        dev = os.stat("/dev/fuse")
        why = (f"/dev/fuse is {stat.filemode(dev.st_mode)} owned by uid {dev.st_uid}: only root may open it, and "
               "libfuse opens /dev/fuse itself before it calls the setuid fusermount3, so no user but root can "
               "mount FUSE here (distributions make it crw-rw-rw-)")
        if not (shutil.which("unshare") and shutil.which("nsenter")):
            unavailable(why + "; unshare/nsenter (util-linux) are missing to try a private mount namespace")
        node = base / "fuse-node"
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, dev.st_rdev)
            os.chmod(node, 0o666)
        except OSError as err:
            unavailable(f"{why}; a crw-rw-rw- node for a private namespace cannot be made: {err}")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount --bind "{node}" /dev/fuse && echo ready && exec sleep 600'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            err = self.holder.stderr.read() if self.holder.poll() is not None else ""
            self.close()
            unavailable(f"{why}; a private mount namespace with its own /dev/fuse failed: {err.strip()}")
        self.prefix = ["nsenter", "-t", str(self.holder.pid), "-m"]
        self.mounts = f"/proc/{self.holder.pid}/mounts"

    def close(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()


def test_files_a_nobody_daemon_cannot_read_give_eacces_for_their_bin_only(shared):
    """The daemon run as nobody (mounting through the setuid fusermount3); read as nobody too,
    since a mount without allow_other is the mounting user's alone."""
    python = require_user_mounts()
    place = UserMounts(shared)
    tree = locked_source(shared)
    want = expected_files(tree["src"])
    mnt = shared / "mnt"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    log = shared / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(place.prefix + python + ["-m", "ifcbfs.cli", str(tree["src"]), str(mnt), "-f"],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd="/")
    try:
        wait_mounted(proc, mnt, log, place.mounts)
        assert "user_id=65534" in ",".join(mount_options(mnt, place.mounts.replace("mounts", "mountinfo")))
        done = run(place.prefix + python, "-c", READER, str(mnt), "3")
        assert done.returncode == 0, done.stderr
        check_unreadable(tree, json.loads(done.stdout), want)
        refused = run(place.prefix, "ls", str(mnt))  # not even root enters another user's mount without allow_other
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert proc.poll() is None, log.read_text()
    finally:
        stop(proc, mnt, place.mounts)
        place.close()
    one_line_per_bad_bin(log.read_text(), tree)


# --- helpers ------------------------------------------------------------------------------
def wait_mounted(proc: subprocess.Popen, mnt: Path, log: Path, mounts: str = "/proc/self/mounts",
                 timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not is_mounted(mnt, mounts):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, mnt, mounts)
            pytest.fail(f"ifcbfs did not mount at {mnt}: {log.read_text(errors='replace')}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, mnt: Path, mounts: str = "/proc/self/mounts") -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the daemon unmounts on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if mounts == "/proc/self/mounts" and is_mounted(mnt):
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
