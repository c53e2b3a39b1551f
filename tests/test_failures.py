"""Mistakes, crashes and damaged data through real mounts: never hang, never look empty,
never fail silently."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ifcbfs.synth import write_dataset
from mounting import IFCBFS, Mount

pytestmark = pytest.mark.mount
FAULTS = Path(__file__).with_name("faults.py")
OLD = 1_700_000_000  # an mtime long past: the bins have settled


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "data"
    write_dataset(src, n_bins=2, n_triggers=20, seed=2, style="D", mtime=OLD)
    return src


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


def wait_for(check, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_links_into_the_mountpoint_are_not_followed(source, tmp_path):
    src, outer = source, tmp_path / "outer"
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


def faulty(fault: str) -> list[str]:
    """The command that runs ifcbfs with `fault` injected (tests/faults.py)."""
    return [sys.executable, str(FAULTS), fault]


def test_a_crash_leaves_the_mount_dead_never_empty_and_recover_serves_again(source, tmp_path):
    m = Mount(source, tmp_path / "mnt", command=faulty("serve-loop"))
    try:
        assert m.proc.wait(20) == 1, m.logged()
        with pytest.raises(OSError) as err:
            os.listdir(m.path)  # never an empty folder: rsync --delete would empty a mirror
        assert err.value.errno == errno.ENOTCONN
        text = m.logged()
        assert "injected failure in the serving loop" in text and "left dead, not unmounted" in text
        assert "-o recover" in text
        done = subprocess.run(IFCBFS + [str(source), str(m.path), "-o", "recover"], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(m.path)) == sorted(os.listdir(source))
    finally:
        subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True)
        m.stop()


def test_a_failing_refresh_on_sighup_never_ends_the_daemon(source, tmp_path):
    m = Mount(source, tmp_path / "mnt", "poll=0", command=faulty("refresh"))
    try:
        for n in (1, 2):
            m.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: m.logged().count("re-reading the source failed") == n, f"failure {n}")
        assert m.proc.poll() is None
        assert sorted(os.listdir(m.path)) == sorted(os.listdir(source))
        assert m.signal(signal.SIGTERM) == 0
        assert not os.path.ismount(m.path) and os.listdir(m.path) == []  # asked to stop: unmounted
    finally:
        m.stop()


def test_in_the_background_without_syslog_logs_go_to_a_file_it_names(source, tmp_path, state_home):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    roi = sorted(source.rglob("*.roi"))[0]
    roi.unlink()  # something to warn about
    os.utime(roi.parent, (OLD, OLD))
    done = subprocess.run(faulty("no-syslog") + [str(source), str(mnt)], capture_output=True, text=True, timeout=30)
    logfile = state_home / "ifcbfs" / (str(mnt).strip("/").replace("/", "-") + ".log")
    pid = None
    try:
        assert done.returncode == 0, done.stderr
        assert f"logging to {logfile}" in done.stderr
        wait_for(lambda: "INFO serving" in logfile.read_text(), "the serving line")
        pid = int(re.search(r"ifcbfs\[(\d+)\]: INFO serving", logfile.read_text()).group(1))
        for folder, _, _ in os.walk(mnt):
            pass
        wait_for(lambda: f"{roi.stem}: damaged: no .roi file" in logfile.read_text(), "the warning")
        os.kill(pid, signal.SIGUSR1)  # a stack dump follows the log
        wait_for(lambda: "most recent call first" in logfile.read_text(), "the stack dump")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if pid:
            wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the daemon to end")


def test_log_option_takes_every_line(source, tmp_path):
    logfile = tmp_path / "logs" / "ifcbfs.log"
    (source / "into-mount").symlink_to(tmp_path / "mnt")
    m = Mount(source, tmp_path / "mnt", f"log={logfile}")
    try:
        os.listdir(m.path)
        wait_for(lambda: "leads into the mountpoint" in logfile.read_text(), "the warning")
        assert "INFO serving" in logfile.read_text() and "leads into" not in m.logged()
    finally:
        m.stop()


def test_a_last_adc_line_without_its_newline_gets_its_row_once_the_bin_settles(ifcb_data, tmp_path):
    """The issue's case: a real 8-line bin whose .adc lost its final newline served adc.csv
    with 7 rows and n_triggers 7, for ever. While its files are fresh it may still be growing
    and keeps that; once they are older than SETTLE, the watcher gives the line its row."""
    bin_id = "D20220522T000439_IFCB134"
    src = tmp_path / "data"
    src.mkdir()
    for ext in ("hdr", "adc", "roi"):
        shutil.copyfile(ifcb_data / "bins" / bin_id / f"{bin_id}.{ext}", src / f"{bin_id}.{ext}")
    lines = (src / f"{bin_id}.adc").read_text().splitlines()
    (src / f"{bin_id}.adc").write_text("\n".join(lines))  # no final newline
    m = Mount(src, tmp_path / "mnt", "poll=0.2")
    try:
        folder = m.path / bin_id
        assert len((folder / "adc.csv").read_text().splitlines()) == 1 + 7
        assert json.loads((folder / "hdr.json").read_text())["n_triggers"] == 7
        assert (folder / f"{bin_id}_00008.png").exists()
        for ext in ("hdr", "adc", "roi"):  # as if the instrument had finished long ago
            os.utime(src / f"{bin_id}.{ext}", (OLD, OLD))
        wait_for(lambda: len((folder / "adc.csv").read_text().splitlines()) == 1 + 8, "the last row")
        rows = (folder / "adc.csv").read_text().splitlines()[1:]
        assert rows == [f"{n},{line}" for n, line in enumerate(lines, 1)]
        assert json.loads((folder / "hdr.json").read_text())["n_triggers"] == 8
    finally:
        m.stop()


def test_each_damaged_bin_gets_one_log_line_naming_what_is_wrong(ifcb_data, tmp_path):
    src = tmp_path / "data"
    damage = {  # folder -> (real bin, what to do to it, the words its log line must hold)
        "cut": ("D20220101T221311_IFCB114", lambda f: f.with_suffix(".roi").write_bytes(
            f.with_suffix(".roi").read_bytes()[:500_000]),
            "damaged: 149 of 255 images pass the end of the .roi (500000 bytes): not served"),
        "no-roi": ("D20220522T000439_IFCB134", lambda f: f.with_suffix(".roi").unlink(), "damaged: no .roi file"),
        "empty-hdr": ("D20220522T003051_IFCB134", lambda f: f.with_suffix(".hdr").write_bytes(b""),
                      "damaged: empty .hdr"),
        "intact": ("D20130526T095207_IFCB013", lambda f: None, None),
    }
    for folder, (bin_id, harm, _) in damage.items():
        shutil.copytree(ifcb_data / "bins" / bin_id, src / folder)
        harm(src / folder / bin_id)
        for path in (src / folder).iterdir():
            os.utime(path, (OLD, OLD))  # long finished: settled
    m = Mount(src, tmp_path / "mnt")
    try:
        for _ in range(2):  # read twice: still one line each
            for folder, _, files in os.walk(m.path):
                for name in files:
                    (Path(folder) / name).read_bytes()
        lines = m.logged().splitlines()
        for folder, (bin_id, _, said) in damage.items():
            about = [line for line in lines if f"{folder}/{bin_id}" in line]
            assert len(about) == (1 if said else 0), (folder, about)
            assert not said or about[0].endswith(f"{folder}/{bin_id}: {said}"), about
        assert len([p for p in (m.path / "cut" / damage["cut"][0]).iterdir() if p.suffix == ".png"]) == 106
    finally:
        m.stop()


def test_a_source_without_bins_mounts_with_a_warning(tmp_path):
    src, mnt = tmp_path / "empty", tmp_path / "mnt"
    (src / "2024" / "D20240601").mkdir(parents=True)
    (src / "README.txt").write_text("no bins here yet")
    mnt.mkdir()
    done = subprocess.run(IFCBFS + [str(src), str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0, done.stderr
        (warning,) = [line for line in done.stderr.splitlines() if "holds no bins" in line]
        assert warning.startswith(f"ifcbfs: source {src} holds no bins")
        assert os.path.ismount(mnt) and os.listdir(mnt) == []
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)


@pytest.mark.parametrize("how", ["poll", "SIGHUP"])
def test_flat_layout_shows_new_bins(source, tmp_path, how):
    m = Mount(source, tmp_path / "mnt", "layout=flat", "poll=0.3" if how == "poll" else "poll=0")
    try:
        before = sorted(os.listdir(m.path))
        write_dataset(source / "later", n_bins=1, n_triggers=5, seed=9, style="D", start="2025-01-01T00:00:00")
        new = sorted(p.stem for p in (source / "later").rglob("*.hdr"))
        if how == "SIGHUP":
            m.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sorted(os.listdir(m.path)) == sorted(before + new), f"the new bin after {how}")
        assert (m.path / new[0] / "hdr.json").exists()
    finally:
        m.stop()
