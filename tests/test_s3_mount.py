"""Kernel mounts of a real S3 server (SeaweedFS) read with real tools: the same tree, bytes and
inodes as a mount of the same files on disk, two mounts at once, an outage, bad credentials."""
import errno
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from mounting import IFCBFS, Mount, decodes, lstat_tree, require_fuse
from s3server import BUCKET, aws_env

pytestmark = pytest.mark.mount
ONE_BIN = "bins/D20220101T221311_IFCB114/D20220101T221311_IFCB114"
STITCHED = "IFCB5_2012_028_081515"


def s3_mount(s3, prefix, mountpoint, *options, **kwargs) -> Mount:
    return Mount(f"s3://{BUCKET}/{prefix}", mountpoint, f"endpoint={s3.endpoint}", *options, env=aws_env(), **kwargs)


@pytest.fixture(scope="module")
def mounts(s3, tmp_path_factory):
    """The bucket's `tree/` and the same files on disk, each mounted."""
    top = tmp_path_factory.mktemp("s3mnt")
    remote = s3_mount(s3, "tree", top / "s3")
    try:
        local = Mount(s3.stage / "tree", top / "local")
    except BaseException:
        remote.stop()
        raise
    yield remote, local
    remote.stop()
    local.stop()


def entries(top: Path) -> dict:
    """Every path under `top`: (mode, size, mtime_ns, inode, sha256 of a file's bytes)."""
    return {p: (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, digest) for p, (st, _, digest) in lstat_tree(top).items()}


def test_the_same_tree_bytes_and_inodes_as_on_disk_and_rsync_copies_nothing(mounts, tmp_path, expected):
    remote, local = mounts
    before = remote.logged()
    ours = entries(remote.path)
    assert ours == entries(local.path) and len(ours) > 1000
    copy = tmp_path / "copy"
    subprocess.run(["rsync", "-a", f"{local.path}/", str(copy)], check=True)
    run = subprocess.run(["rsync", "-a", "--itemize-changes", "--stats", f"{remote.path}/", str(copy)],
                         check=True, capture_output=True, text=True).stdout
    assert "Number of regular files transferred: 0" in run and "Total transferred file size: 0 bytes" in run, run
    itemized = [line for line in run.splitlines() if len(line) > 1 and line[0] in "<>ch.*" and line[1] in "fdLDS"]
    assert itemized == [], run
    for bin_id, want in expected["bins"].items():
        folder = remote.path / "bins" / bin_id / bin_id
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(want["images"]), bin_id
        for name, spec in want["images"].items():
            with Image.open(folder / name) as im:
                assert im.size == (spec["width"], spec["height"])
                assert hashlib.sha256(im.tobytes()).hexdigest() == spec["pixels_sha256"], name
    assert remote.logged() == before, "reading a healthy bucket logged something"


def test_a_bin_costs_its_hdr_and_adc_an_image_one_exact_get_a_stitched_one_two(s3, tmp_path):
    index = f"index={tmp_path / 'index.sqlite'}"
    m = s3_mount(s3, "tree", tmp_path / "counted", "poll=0", "readahead=0", index)  # no GET not asked for
    try:
        folder, stitched = m.path / ONE_BIN, m.path / "bins" / STITCHED / STITCHED
        os.listdir(folder.parent)
        os.listdir(stitched.parent)
        os.listdir(stitched)
        got = {"counts": s3.requests()}

        def cost(step) -> tuple[int, int]:
            """(GETs, bytes sent) that one step costs the server."""
            before = got["counts"]
            got["data"] = step()
            after = got["counts"] = s3.requests()
            return after["GET"] - before["GET"], after["bytes"] - before["bytes"]

        raw = [s3.stage / "tree" / ONE_BIN.rpartition("/")[0] / f"{folder.name}.{ext}" for ext in ("hdr", "adc")]
        assert cost(lambda: os.listdir(folder)) == (2, sum(p.stat().st_size for p in raw))
        for png in sorted(folder.glob("*.png"))[-1::-7]:
            gets, sent = cost(png.read_bytes)
            with Image.open(io.BytesIO(got["data"])) as im:
                assert (gets, sent) == (1, im.width * im.height), png.name
        gets, sent = cost((stitched / f"{STITCHED}_00003.png").read_bytes)
        assert gets == 2 and sent < (s3.stage / "tree" / "bins" / STITCHED / f"{STITCHED}.roi").stat().st_size
    finally:
        m.stop()
    again = s3_mount(s3, "tree", tmp_path / "counted", "poll=0", "readahead=0", index)  # the index is warm now
    try:
        os.listdir(again.path / ONE_BIN.rpartition("/")[0])
        before = s3.requests()
        assert len(os.listdir(again.path / ONE_BIN)) > 2 and s3.requests()["GET"] == before["GET"]
    finally:
        again.stop()


def test_two_mounts_of_one_bucket_serve_the_same_bytes_at_once(s3, mounts, tmp_path):
    first, _ = mounts
    second = s3_mount(s3, "tree", tmp_path / "second")
    try:
        pngs = sorted(p.relative_to(first.path) for p in (first.path / "bins").rglob("*.png"))[:400]
        results = {}

        def read(mount, share):
            results[(mount.path, share)] = [(mount.path / p).read_bytes() for p in pngs[share::4]]

        threads = [threading.Thread(target=read, args=(m, k)) for m in (first, second) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(4):
            assert results[(first.path, k)] == results[(second.path, k)]
        assert {os.stat(first.path / p).st_ino for p in pngs} == {os.stat(second.path / p).st_ino for p in pngs}
    finally:
        second.stop()


def test_the_ifcbkit_key_scheme_mounts_with_no_option(s3, tmp_path, expected):
    with_kit = s3_mount(s3, "kit", tmp_path / "kit")
    try:
        top = sorted(os.listdir(with_kit.path))
        assert top == ["2013", "2020", "2021", "2022", "2024", "legacy"]
        stitched = with_kit.path / "legacy" / "IFCB5_2012_028_081515" / "IFCB5_2012_028_081515_00003.png"
        spec = expected["bins"]["IFCB5_2012_028_081515"]["images"][stitched.name]
        with Image.open(stitched) as im:
            assert hashlib.sha256(im.tobytes()).hexdigest() == spec["pixels_sha256"]
        assert decodes(with_kit.path) == 1
    finally:
        with_kit.stop()


def test_an_outage_is_eio_with_one_log_line_and_reads_work_once_it_is_back(s3, tmp_path, expected):
    m = s3_mount(s3, "tree", tmp_path / "outage", "poll=0.5")
    try:
        busy = "D20200819T123054_IFCB122"
        folders = [m.path / ONE_BIN, m.path / "bins" / busy / busy]
        pngs = [sorted(folder.glob("*.png")) for folder in folders]
        outcomes = []

        def read(paths):
            for path in paths:
                try:
                    outcomes.append((path, path.read_bytes()))
                except OSError as err:
                    outcomes.append((path, err.errno))
                    return  # as a reader would: stop at the first error

        readers = [threading.Thread(target=read, args=(pngs[1][k::4],)) for k in range(4)]
        for t in readers:
            t.start()
        while not outcomes:
            time.sleep(0.001)
        s3.stop()  # mid-read
        try:
            for t in readers:
                t.join()
            for png in pngs[0][:3]:
                with pytest.raises(OSError) as err:
                    png.read_bytes()
                assert err.value.errno == errno.EIO
            assert [sorted(folder.glob("*.png")) for folder in folders] == pngs, "the tree changed in the outage"
        finally:
            s3.start()
        assert m.proc.poll() is None
        for path, got in outcomes:  # each read: the exact image, or EIO; never other bytes
            if got != errno.EIO:
                with Image.open(io.BytesIO(got)) as im:
                    want = expected["bins"][busy]["images"][path.name]["pixels_sha256"]
                    assert hashlib.sha256(im.tobytes()).hexdigest() == want, path
        assert errno.EIO in [got for _, got in outcomes]
        warnings = [line for line in m.logged().splitlines() if "WARNING" in line]
        for folder in (ONE_BIN, f"bins/{busy}/{busy}"):
            assert len([line for line in warnings if f"WARNING {folder}: read: " in line]) <= 1, m.logged()
        assert any(f"WARNING {ONE_BIN}: read: " in line and "cannot connect" in line for line in warnings)
        assert len(warnings) <= 3, m.logged()  # the two bins' reads; the watcher's re-check
        for png in pngs[0][:3] + pngs[1][-3:]:
            with Image.open(png) as im:
                im.load()
    finally:
        m.stop()


def test_wrong_credentials_or_a_missing_bucket_are_one_line_at_mount(s3, tmp_path):
    require_fuse()
    mnt = tmp_path / "refused"
    mnt.mkdir()

    def refused(source, env, *options):
        run = subprocess.run(IFCBFS + [source, str(mnt), "-o", ",".join((f"endpoint={s3.endpoint}",) + options)],
                             env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and not os.path.ismount(mnt)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        return lines[0]

    assert "access denied" in refused(f"s3://{BUCKET}/tree", aws_env(secret="wrong"))
    assert "InvalidAccessKeyId" in refused(f"s3://{BUCKET}/tree", aws_env("nobody", "wrong"))
    assert "no such bucket" in refused("s3://no-such-bucket", aws_env())
    assert "no credentials found" in refused(f"s3://{BUCKET}/tree", aws_env(None))
    assert "expected a URL" in refused(f"s3://{BUCKET}/tree", aws_env(), "endpoint=ftp://x")
    assert "region" in refused(f"s3://{BUCKET}/tree", aws_env(), "region=Not A Region")


def test_export_from_the_bucket_writes_what_the_export_from_disk_does(s3, tmp_path):
    def export(*args):
        run = subprocess.run([sys.executable, "-m", "ifcbfs.export", *args], env=aws_env(), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return entries_without_inodes(args[1])

    from_s3 = export(f"s3://{BUCKET}/tree", str(tmp_path / "a"), "--endpoint", s3.endpoint, "--bins", "D2022*")
    from_disk = export(str(s3.stage / "tree"), str(tmp_path / "b"), "--bins", "D2022*")
    assert from_s3 == from_disk and len(from_s3) > 100


def entries_without_inodes(top) -> dict:
    return {path: (mode, size, mtime, digest) for path, (mode, size, mtime, _, digest) in entries(Path(top)).items()}
