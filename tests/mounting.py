"""Real kernel mounts for tests: start ifcbfs, wait until it serves, stop it."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

IFCBFS = [sys.executable, "-m", "ifcbfs.cli"]


def require_fuse() -> None:
    """Skip (locally) or fail (in CI, which has FUSE) when this machine cannot mount."""
    missing = [what for what, ok in (("/dev/fuse", os.path.exists("/dev/fuse")),
                                     ("fusermount3", shutil.which("fusermount3"))) if not ok]
    if missing:
        reason = f"cannot mount FUSE here: {' and '.join(missing)} missing (apt-get install fuse3)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def stats(mnt) -> dict:
    """The daemon's counters: its stats file at the mount root (found by name, never listed)."""
    with open(os.path.join(mnt, ".ifcbfs-stats"), "rb") as f:
        return json.loads(f.read())


def decodes(mnt) -> int:
    """PNGs the daemon has produced so far."""
    return stats(mnt)["decodes"]


class Mount:
    """An ifcbfs process in the foreground (-f) serving `source` (a folder or an s3:// URL) at
    `mountpoint`, with `env` as its environment when given."""

    def __init__(self, source, mountpoint, *options: str, log: Path | None = None, command: list[str] = IFCBFS,
                 env: dict | None = None):
        require_fuse()
        self.source = source if str(source).startswith("s3://") else Path(source)
        self.path = Path(mountpoint)
        self.path.mkdir(parents=True, exist_ok=True)
        self.log = log or self.path.with_name(self.path.name + ".log")
        args = [str(self.source), str(self.path), "-f"] + (["-o", ",".join(options)] if options else [])
        self.errors = open(self.log, "ab")
        self.proc = subprocess.Popen(command + args, stdin=subprocess.DEVNULL, stdout=self.errors, stderr=self.errors,
                                     env=env)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ifcbfs did not mount: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)

    def logged(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.path) or _stale(self.path):
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        self.errors.close()
        return self.proc.returncode


def _stale(path) -> bool:
    try:
        os.statvfs(path)
    except OSError:
        return True
    return False


@contextlib.contextmanager
def mounted(source, mountpoint, *options: str, env: dict | None = None):
    m = Mount(source, mountpoint, *options, env=env)
    try:
        yield m
    finally:
        m.stop()


def lstat_tree(top) -> dict:
    """Every entry under top by its path from top: (its lstat, where it links to or None, the
    sha256 of a regular file's bytes or None)."""
    import hashlib

    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            with_bytes = stat.S_ISREG(st.st_mode)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest() if with_bytes else None
            out[os.path.relpath(p, top)] = (st, link, digest)
    return out


def tree_digest(root) -> dict:
    """Every file under root: (size, mtime_ns, sha256), to prove a tree was not changed."""
    import hashlib

    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out
