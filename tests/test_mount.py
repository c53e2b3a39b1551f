"""Real kernel mounts read with real tools: cp, rsync, find, stat, Pillow, many threads."""
import errno
import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

import ifcbfs
from mounting import IFCBFS, Mount, decodes, mounted, require_fuse, stats, tree_digest
from ifcbfs.synth import write_dataset

pytestmark = pytest.mark.mount


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(root, n_bins=4, n_triggers=150, seed=11, style="mixed", mtime=1_700_000_000)
    return root


@pytest.fixture(scope="module")
def real_mount(ifcb_data, tmp_path_factory):
    before = tree_digest(ifcb_data)
    m = Mount(ifcb_data, tmp_path_factory.mktemp("mnt") / "real")
    yield m
    m.stop()
    assert tree_digest(ifcb_data) == before, "the source tree changed"


def files_under(top):
    return sorted(p for p in Path(top).rglob("*") if p.is_file())


def test_stat_find_and_ls_decode_no_pixel(real_mount):
    mnt = real_mount.path
    for folder, dirs, files in os.walk(mnt):
        for name in dirs + files:
            os.lstat(os.path.join(folder, name))
    subprocess.run(["find", str(mnt), "-ls"], check=True, capture_output=True)
    subprocess.run(["ls", "-lR", str(mnt)], check=True, capture_output=True)
    subprocess.run(["du", "-s", str(mnt)], check=True, capture_output=True)
    assert decodes(mnt) == 0


def test_the_stats_file_is_found_by_name_only_and_there_are_no_xattrs(real_mount):
    mnt = real_mount.path
    assert ".ifcbfs-stats" not in os.listdir(mnt)  # so find, rsync and ls -a never see it
    counters = stats(mnt)
    assert counters["decodes"] >= 0 and counters["bins_listed"] >= 0
    assert os.stat(mnt / ".ifcbfs-stats").st_mode & 0o222 == 0
    with pytest.raises(OSError) as err:
        open(mnt / ".ifcbfs-stats", "wb")
    assert err.value.errno == errno.EROFS
    for path in (mnt, files_under(mnt / "bins")[0]):  # the kernel is told once that there are none
        for ask in (lambda: os.getxattr(path, "user.ifcbfs.decodes"), lambda: os.listxattr(path)) * 2:
            with pytest.raises(OSError) as err:
                ask()
            assert err.value.errno == errno.ENOTSUP


def test_every_png_decodes_to_the_expected_pixels(real_mount, expected):
    mnt = real_mount.path / "bins"
    for bin_id, want in expected["bins"].items():
        folder = mnt / bin_id / bin_id
        pngs = sorted(p.name for p in folder.iterdir() if p.suffix == ".png")
        assert pngs == sorted(want["images"]), bin_id
        for name, spec in want["images"].items():
            with Image.open(folder / name) as im:
                assert im.mode == "L" and im.size == (spec["width"], spec["height"])
                assert hashlib.sha256(im.tobytes()).hexdigest() == spec["pixels_sha256"], name


def test_attributes_match_bytes_read_and_source(real_mount, ifcb_data):
    mnt = real_mount.path
    bin_dir = mnt / "bins" / "D20220101T221311_IFCB114" / "D20220101T221311_IFCB114"
    source = [ifcb_data / "bins" / "D20220101T221311_IFCB114" / f"D20220101T221311_IFCB114.{e}" for e in ("hdr", "adc", "roi")]
    newest = max(p.stat().st_mtime_ns for p in source)
    for path in bin_dir.iterdir():
        st = path.stat()
        data = path.read_bytes()
        assert st.st_size == len(data) and st.st_blocks == -(-len(data) // 512)
        assert st.st_mode & 0o7777 == 0o644 and (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert st.st_mtime_ns == newest
        assert st.st_blksize == 1 << 17  # cp and Python read most images in one go
    assert bin_dir.stat().st_mode & 0o7777 == 0o755
    # readdir(3) sizes its buffer by a folder's block size: a bin's 2,000 images in one request
    assert bin_dir.stat().st_blksize == (mnt / "bins").stat().st_blksize == mnt.stat().st_blksize == 1 << 20
    doc = __import__("json").loads((bin_dir / "hdr.json").read_text())
    assert doc["bin_id"] == "D20220101T221311_IFCB114" and doc["schema"] == "v2" and doc["instrument"] == 114
    assert doc["n_images"] == len(list(bin_dir.glob("*.png")))
    assert (bin_dir / "adc.csv").read_text().startswith("roi_number,trigger,adcTime,")
    assert doc["ml_analyzed_rule"] == "header" and doc["n_images_adc"] == 255
    # the raw header, bytes unchanged (CRLF and all), as cmp sees it
    subprocess.run(["cmp", str(bin_dir / "D20220101T221311_IFCB114.hdr"), str(source[0])], check=True)


def test_odd_bins_are_listed_and_read_in_full(real_mount):
    odd = real_mount.path / "odd"
    for path in files_under(odd):
        assert len(path.read_bytes()) == path.stat().st_size
    assert sorted(p.name for p in (odd / "no-roi" / "IFCB5_2012_028_081515").iterdir()) == [
        "IFCB5_2012_028_081515.hdr", "adc.csv", "hdr.json"]


def test_every_write_is_refused_with_erofs(real_mount):
    mnt = real_mount.path
    some_file = next(p for p in files_under(mnt / "bins"))
    attempts = [
        lambda: open(some_file, "r+b"), lambda: open(some_file, "ab"), lambda: open(mnt / "new.txt", "wb"),
        lambda: os.mkdir(mnt / "newdir"), lambda: os.unlink(some_file), lambda: os.rmdir(some_file.parent),
        lambda: os.rename(some_file, some_file.with_name("x.png")), lambda: os.chmod(some_file, 0o644),
        lambda: os.truncate(some_file, 0), lambda: os.setxattr(some_file, "user.x", b"1"),
        lambda: os.symlink("x", mnt / "link"), lambda: os.link(some_file, mnt / "hard"),
        lambda: os.utime(some_file, (1, 1)), lambda: os.chown(some_file, 1, 1),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as err:
            attempt()
        assert err.value.errno == errno.EROFS


def test_cp_rsync_twice_remount_and_inodes(synth_root, tmp_path):
    mnt = tmp_path / "mnt"
    with mounted(synth_root, mnt) as m:
        subprocess.run(["cp", "-r", str(mnt), str(tmp_path / "cp")], check=True)
        out = subprocess.run(["rsync", "-a", "--stats", f"{mnt}/", str(tmp_path / "rs")], check=True, capture_output=True, text=True).stdout
        assert "Number of regular files transferred: 0" not in out
        again = subprocess.run(["rsync", "-ai", f"{mnt}/", str(tmp_path / "rs")], check=True, capture_output=True, text=True).stdout
        assert again.strip() == "", again
        inodes = {p: os.lstat(p).st_ino for p in map(str, Path(mnt).rglob("*"))}
        n_png = subprocess.run(["find", str(mnt), "-name", "*.png"], capture_output=True, text=True).stdout.count("\n")
        some, ino = next(iter(inodes.items()))
        found = subprocess.run(["find", str(mnt), "-inum", str(ino)], capture_output=True, text=True).stdout.split()
        assert found == [some]
    assert subprocess.run(["diff", "-r", str(tmp_path / "cp"), str(tmp_path / "rs")]).returncode == 0
    root = ifcbfs.open_root(str(synth_root))
    assert n_png == sum(len(b.images) for b in ifcbfs.bins(root)) > 0
    with mounted(synth_root, mnt):
        again = subprocess.run(["rsync", "-ai", f"{mnt}/", str(tmp_path / "rs")], check=True, capture_output=True, text=True).stdout
        assert again.strip() == "", again
        assert {p: os.lstat(p).st_ino for p in map(str, Path(mnt).rglob("*"))} == inodes


def test_eight_concurrent_readers_get_exact_bytes(synth_root, tmp_path):
    root = ifcbfs.open_root(str(synth_root))
    want = {}
    for b in ifcbfs.bins(root):
        folder = os.path.join(b.files.folder, str(b.files.bin_id))
        for e in b.entries:
            want[os.path.join(folder, e.name)] = hashlib.sha256(b.read(e.name)).hexdigest()
    paths = sorted(want)
    errors = []
    with mounted(synth_root, tmp_path / "mnt") as m:
        def reader(k):
            try:
                for rel in paths[k::3] + paths[::7]:  # overlapping work: same files at once
                    p = m.path / rel
                    data = p.read_bytes()
                    if len(data) != p.stat().st_size or hashlib.sha256(data).hexdigest() != want[rel]:
                        errors.append(rel)
            except Exception as err:  # noqa: BLE001
                errors.append(repr(err))

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert decodes(m.path) <= sum(1 for p in paths if p.endswith(".png"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly_and_exit_zero(synth_root, tmp_path, signum):
    m = Mount(synth_root, tmp_path / "mnt")
    files = files_under(m.path)[:5]
    handles = [open(p, "rb") for p in files]  # readers still active
    assert m.signal(signum) == 0
    for h in handles:
        with pytest.raises(OSError):  # the daemon is gone: the kernel says so, it does not hang
            h.close()
    assert not os.path.ismount(m.path)
    m.stop()


def test_fusermount_ends_the_daemon(synth_root, tmp_path):
    m = Mount(synth_root, tmp_path / "mnt")
    subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    assert m.proc.wait(10) == 0


def test_background_mode_returns_once_serving(synth_root, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        done = subprocess.run(IFCBFS + [str(synth_root), str(mnt)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(mnt)) == sorted(os.listdir(synth_root))  # serving at once
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])


def test_options_uid_gid_flat_and_skipped(synth_root, tmp_path):
    skip = synth_root / "skip"
    ifcbfs.synth.write_bin(skip, "D20240601T000000_IFCB999", 5, seed=1)
    try:
        with mounted(synth_root, tmp_path / "a", "uid=1234,gid=5678,layout=flat") as m:
            names = os.listdir(m.path)
            assert names and all(ifcbfs.core.ids.is_bin_id(n) for n in names)
            assert "D20240601T000000_IFCB999" not in names
            st = (m.path / names[0]).stat()
            assert (st.st_uid, st.st_gid) == (1234, 5678)
        with mounted(synth_root, tmp_path / "b", "include_skipped") as m:
            assert (m.path / "skip" / "D20240601T000000_IFCB999" / "hdr.json").exists()
    finally:
        for p in skip.iterdir():
            p.unlink()
        skip.rmdir()


def test_umask_option_and_writes_still_refused(synth_root, tmp_path):
    with mounted(synth_root, tmp_path / "m", "umask=027") as m:
        some = next(p for p in files_under(m.path) if p.suffix == ".png")
        assert (some.stat().st_mode & 0o7777, some.parent.stat().st_mode & 0o7777) == (0o640, 0o750)
    with mounted(synth_root, tmp_path / "m", "umask=000") as m:
        some = next(p for p in files_under(m.path) if p.suffix == ".png")
        assert some.stat().st_mode & 0o7777 == 0o666
        with pytest.raises(OSError) as err:
            open(some, "r+b")
        assert err.value.errno == errno.EROFS


def test_df_shows_no_capacity_rather_than_full(synth_root, tmp_path):
    with mounted(synth_root, tmp_path / "m") as m:
        files_under(m.path)  # every bin loaded: still nothing to report
        st = os.statvfs(m.path)
        assert (st.f_blocks, st.f_bfree, st.f_files, st.f_ffree, st.f_namemax) == (0, 0, 0, 0, 255)
        for flags in ("-P", "-Pi"):
            out = subprocess.run(["df", flags, str(m.path)], check=True, capture_output=True, text=True).stdout
            fields = out.splitlines()[-1].split()
            assert fields[1:5] == ["0", "0", "0", "-"] and fields[5] == str(m.path), out


def _cli(*args):
    return subprocess.run(IFCBFS + list(map(str, args)), capture_output=True, text=True, timeout=30)


def test_clear_errors_for_bad_paths(tmp_path, synth_root):
    require_fuse()
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    (tmp_path / "mnt").mkdir()
    cases = [
        ((tmp_path / "missing", tmp_path / "mnt"), "does not exist"),
        ((tmp_path / "file", tmp_path / "mnt"), "is not a folder"),
        ((synth_root, tmp_path / "nomnt"), "does not exist"),
        ((synth_root, tmp_path / "file"), "is not a folder"),
        ((synth_root, tmp_path / "full"), "is not empty"),
        ((synth_root, tmp_path / "mnt", "-o", "layout=sideways"), "expected mirror or flat"),
        ((synth_root, tmp_path / "mnt", "-o", "bogus"), "unknown option"),
        ((synth_root,), "expected SOURCE and MOUNTPOINT"),
    ]
    for args, message in cases:
        done = _cli(*args)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "usage: ifcbfs SOURCE MOUNTPOINT" in _cli("--help").stdout
    assert _cli("--version").stdout.startswith("ifcbfs ")


def test_dead_mount_is_reported_and_recovered(synth_root, tmp_path):
    before = tree_digest(synth_root)
    m = Mount(synth_root, tmp_path / "mnt")
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                for p in files_under(m.path):
                    p.read_bytes()
            except OSError:
                pass  # the daemon is gone: readers get errors, never hang

    readers = [threading.Thread(target=reader) for _ in range(4)]
    try:
        for t in readers:
            t.start()
        time.sleep(0.5)
        m.proc.kill()  # kill -9 while readers run: the mount stays, dead
        m.proc.wait()
        stop.set()
        for t in readers:
            t.join(10)
        assert not any(t.is_alive() for t in readers)
        assert tree_digest(synth_root) == before
        done = _cli(synth_root, m.path)
        assert done.returncode != 0 and "transport endpoint is not connected" in done.stderr
        assert "fusermount3 -uz" in done.stderr and "-o recover" in done.stderr
        done = _cli(synth_root, m.path, "-o", "recover")
        assert done.returncode == 0, done.stderr
        assert os.listdir(m.path)
        subprocess.run(["fusermount3", "-u", str(m.path)], check=True)
    finally:
        m.stop()
