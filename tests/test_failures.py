"""Mistakes, crashes and damaged data through real mounts: never hang, never look empty,
never fail silently."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ifcbfs.synth import write_dataset
from mounting import Mount

pytestmark = pytest.mark.mount
OLD = 1_700_000_000  # an mtime long past: the bins have settled


def walk_or_give_up(mnt: Path, m: Mount, timeout: float = 30) -> list[str]:
    """Every path under `mnt` by find(1); if it hangs, detach the mount and fail (never hang)."""
    try:
        done = subprocess.run(["find", str(mnt)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        m.proc.kill()
        pytest.fail(f"find {mnt} hung for {timeout} s: the mount waits on itself")
    assert done.returncode == 0, done.stderr
    return sorted(os.path.relpath(p, mnt) for p in done.stdout.split("\n") if p)


def test_links_into_the_mountpoint_are_not_followed(tmp_path):
    src, outer = tmp_path / "data", tmp_path / "outer"
    write_dataset(src, n_bins=2, n_triggers=20, seed=2, style="D", mtime=OLD)
    mnt = outer / "mnt"
    mnt.mkdir(parents=True)
    os.symlink(mnt, src / "into-mount")
    os.symlink(outer, src / "above-mount")
    m = Mount(src, mnt)
    try:
        paths = walk_or_give_up(mnt, m)
        assert not [p for p in paths if p.startswith(("into-mount", "above-mount"))]
        assert sum(p.endswith("hdr.json") for p in paths) == 2
        walk_or_give_up(mnt, m)
        lines = [line for line in m.logged().splitlines() if "leads into the mountpoint" in line]
        assert len(lines) == 2, m.logged()
        assert m.proc.poll() is None
    finally:
        m.stop()
