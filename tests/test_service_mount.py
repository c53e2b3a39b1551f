"""The daemon as a service: mount(8) and fstab, sd_notify, SIGHUP."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ifcbfs.synth import write_dataset
from mounting import IFCBFS, Mount, require_fuse

pytestmark = pytest.mark.mount
BIN = Path(sys.executable).parent / "ifcbfs"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc") / "data"
    write_dataset(root, n_bins=3, n_triggers=40, seed=4, style="mixed", mtime=1_700_000_000)
    return root


@pytest.fixture
def ifcbfs_on_path():
    """mount.fuse3 runs `ifcbfs` from the system PATH, as scripts/install-systemd arranges."""
    if not BIN.exists():
        pytest.fail(f"{BIN} missing: the package is not installed in this environment")
    link = Path("/usr/local/bin/ifcbfs")
    made = False
    if not link.exists():
        if os.geteuid() != 0:
            pytest.skip("needs root to put ifcbfs on the system PATH for mount(8)")
        link.symlink_to(BIN)
        made = True
    yield
    if made:
        link.unlink()


def _umount(mnt):
    subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)


def test_mount_t_fuse_ifcbfs(source, tmp_path, ifcbfs_on_path):
    require_fuse()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mount(8) needs root here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "fuse.ifcbfs", str(source), str(mnt), "-o", "ro,layout=flat"],
                          capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0, done.stderr
        assert len(os.listdir(mnt)) == 3
        line = next(l for l in Path("/proc/self/mounts").read_text().splitlines() if f" {mnt} " in l)
        assert line.split()[2] == "fuse.ifcbfs"
    finally:
        _umount(mnt)


def test_fstab_line(source, tmp_path, ifcbfs_on_path):
    require_fuse()
    if os.geteuid() != 0:
        pytest.skip("mount(8) needs root here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{source} {mnt} fuse.ifcbfs ro,noauto,layout=mirror,cache_size=64M 0 0\n")
    done = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(mnt)) == sorted(os.listdir(source))
    finally:
        _umount(mnt)


def test_sd_notify_ready_after_serving_then_status_and_stopping(source, tmp_path):
    require_fuse()
    sock_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(20)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    proc = subprocess.Popen(IFCBFS + [str(source), str(mnt), "-f"], env=env, stderr=subprocess.DEVNULL)
    try:
        ready = sock.recv(4096).decode()
        assert "READY=1" in ready and "STATUS=" in ready
        assert os.listdir(mnt), "READY=1 came before the mount served files"
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _umount(mnt)
        sock.close()


def test_sighup_drops_caches_and_rescans(source, tmp_path):
    m = Mount(source, tmp_path / "mnt", "poll=0")  # no polling: only SIGHUP can show the new bin
    try:
        before = sorted(os.listdir(m.path))
        extra = source / "extra"
        write_dataset(extra, n_bins=1, n_triggers=5, seed=9, style="D", start="2025-01-01T00:00:00", layout="flat")
        m.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "extra" not in os.listdir(m.path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(os.listdir(m.path)) == sorted(before + ["extra"])
        assert m.proc.poll() is None
        assert "SIGHUP" in m.logged()
    finally:
        m.stop()
        shutil.rmtree(source / "extra", ignore_errors=True)
