"""The pyfuse3 Operations driven directly under trio, without a kernel."""
import errno
import json
import os

import pyfuse3
import pytest
import trio

import ifcbfs.logonce

from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import ROOT_INO, Namespace, Options
from ifcbfs.fs.ops import Operations
from ifcbfs.synth import write_bin

STEM = "IFCB5_2012_028_081515"


@pytest.fixture
def ops(tmp_path):
    write_bin(tmp_path / "IFCB5_2012_028", STEM, 80, seed=2, pair_fraction=0.2)
    return Operations(Namespace(DataRoot(str(tmp_path)), Options(uid=1234, gid=5678)))


def run(fn, *args):
    return trio.run(fn, *args)


def listing(ops, ino, monkeypatch):
    got = []

    def reply(token, name, attr, next_id):
        got.append((name.decode(), attr.st_ino, next_id))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)

    async def go():
        fh = await ops.opendir(ino, None)
        await ops.readdir(fh, 0, None)
        await ops.releasedir(fh)

    run(go)
    return got


def test_lookup_getattr_readdir_open_read(ops, monkeypatch):
    async def go():
        day = await ops.lookup(ROOT_INO, b"IFCB5_2012_028", None)
        b = await ops.lookup(day.st_ino, STEM.encode(), None)
        return day, b

    day, b = run(go)
    assert day.st_mode & 0o777 == 0o755 and b.st_uid == 1234 and b.st_gid == 5678
    entries = listing(ops, b.st_ino, monkeypatch)
    names = [n for n, _, _ in entries]
    assert names == sorted(names) and names[-2:] == ["adc.csv", "hdr.json"]
    assert [i for _, _, i in entries] == list(range(1, len(entries) + 1))

    async def read_all():
        out = {}
        for name, ino, _ in entries:
            attr = await ops.getattr(ino, None)
            assert attr.st_mode & 0o777 == 0o644 and attr.entry_timeout > 60
            fi = await ops.open(ino, os.O_RDONLY, None)
            assert fi.keep_cache
            data = b""
            while True:  # in pieces, as the kernel asks
                piece = await ops.read(fi.fh, len(data), 4096)
                if not piece:
                    break
                data += piece
            out[name] = (attr.st_size, data)
        return out

    for name, (size, data) in run(read_all).items():
        assert len(data) == size, name


def test_write_handlers_refuse_with_erofs(ops):
    async def go():
        calls = [
            ops.open(ROOT_INO, os.O_WRONLY, None), ops.open(ROOT_INO, os.O_RDWR, None),
            ops.create(ROOT_INO, b"x", 0o644, os.O_CREAT, None), ops.mkdir(ROOT_INO, b"x", 0o755, None),
            ops.unlink(ROOT_INO, b"x", None), ops.rmdir(ROOT_INO, b"x", None),
            ops.rename(ROOT_INO, b"a", ROOT_INO, b"b", 0, None), ops.setattr(ROOT_INO, None, None, None, None),
            ops.setxattr(ROOT_INO, b"user.x", b"1", None), ops.removexattr(ROOT_INO, b"user.x", None),
            ops.symlink(ROOT_INO, b"x", b"y", None), ops.link(ROOT_INO, ROOT_INO, b"x", None),
            ops.write(ROOT_INO, 0, b"x"), ops.mknod(ROOT_INO, b"x", 0o644, 0, None),
            ops.access(ROOT_INO, os.W_OK, None),
        ]
        for call in calls:
            with pytest.raises(pyfuse3.FUSEError) as err:
                await call
            assert err.value.errno == errno.EROFS

    run(go)


def test_unexpected_exception_becomes_eio_and_one_log_line(ops, monkeypatch, caplog):
    async def find_png():
        day = await ops.lookup(ROOT_INO, b"IFCB5_2012_028", None)
        b = await ops.lookup(day.st_ino, STEM.encode(), None)
        return (await ops.lookup(b.st_ino, f"{STEM}_00001.png".encode(), None)).st_ino

    ino = run(find_png)

    def broken(_):
        raise KeyError("boom")

    monkeypatch.setattr(ops.ns, "content", broken)
    monkeypatch.setattr(ops.ns, "is_cheap", lambda node: True)
    ifcbfs.logonce._bad_bins.clear()

    async def go():
        for _ in range(3):  # a reader retrying: still one line for the bin
            with pytest.raises(pyfuse3.FUSEError) as err:
                await ops.read(ino, 0, 100)
            assert err.value.errno == errno.EIO

    run(go)
    lines = [r for r in caplog.records if "KeyError" in r.getMessage()]
    assert len(lines) == 1 and f"{STEM}_00001.png" in lines[0].getMessage()


def test_missing_names_no_xattrs_and_the_stats_file(ops, monkeypatch):
    async def go():
        with pytest.raises(pyfuse3.FUSEError) as err:
            await ops.lookup(ROOT_INO, b"nothing", None)
        assert err.value.errno == errno.ENOENT
        with pytest.raises(pyfuse3.FUSEError) as err:  # no xattrs: the kernel stops asking
            await ops.getxattr(ROOT_INO, b"user.other", None)
        assert err.value.errno == errno.ENOSYS
        stats = await ops.lookup(ROOT_INO, b".ifcbfs-stats", None)
        info = await ops.open(stats.st_ino, os.O_RDONLY, None)
        assert info.direct_io and json.loads(await ops.read(info.fh, 0, 4096))["decodes"] == 0
        await ops.release(info.fh)
        assert stats.st_ino == (await ops.getattr(stats.st_ino, None)).st_ino
        st = await ops.statfs(None)
        assert st.f_namemax == 255
        assert (st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree) == (0, 0, 0, 0, 0)

    run(go)
    assert ".ifcbfs-stats" not in [name for name, _, _ in listing(ops, ROOT_INO, monkeypatch)]  # never listed


def test_the_zip_is_read_by_range_from_the_version_each_open_pinned(tmp_path, monkeypatch):
    from ifcbfs.core.mosaic import Mosaic

    write_bin(tmp_path / "IFCB5_2012_028", STEM, 80, seed=2, pair_fraction=0.2)
    ops = Operations(Namespace(DataRoot(str(tmp_path)), Options(zip=True, mosaic=Mosaic(200, 100, 25))))
    whole = []
    monkeypatch.setattr(ops.ns, "content", lambda node: whole.append(node.name) or Namespace.content(ops.ns, node))

    async def go():
        day = await ops.lookup(ROOT_INO, b"IFCB5_2012_028", None)
        b = await ops.lookup(day.st_ino, STEM.encode(), None)
        out = {}
        for name in (f"{STEM}.zip", "mosaic/page-001.png", "mosaic/coordinates.csv"):
            folder, _, leaf = name.rpartition("/")
            parent = (await ops.lookup(b.st_ino, folder.encode(), None)).st_ino if folder else b.st_ino
            attr = await ops.lookup(parent, leaf.encode(), None)
            fi = await ops.open(attr.st_ino, os.O_RDONLY, None)
            assert fi.direct_io and fi.fh != attr.st_ino  # past the page cache, a version of its own
            pieces = [await ops.read(fi.fh, offset, 4099) for offset in range(0, attr.st_size + 4099, 4099)]
            await ops.release(fi.fh)
            out[name] = (attr, b"".join(pieces))
        return out

    got = run(go)
    assert set(whole) == {"page-001.png", "coordinates.csv"}  # the zip is never made whole
    for name, (attr, data) in got.items():
        assert len(data) == attr.st_size and data == ops.ns.read(attr.st_ino), name


def test_a_failing_refresh_does_not_end_the_watcher(ops, monkeypatch, caplog):
    from ifcbfs.fs.ops import watch

    calls = []

    def broken(everything=False):
        calls.append(1)
        raise OSError("source went away")

    monkeypatch.setattr(ops.ns, "refresh", broken)
    ifcbfs.logonce._bad_bins.clear()

    async def go():
        with trio.move_on_after(0.3):
            await watch(ops, 0.02)

    run(go)
    assert len(calls) >= 3  # still polling after failures
    assert sum("re-checking the source failed" in r.getMessage() for r in caplog.records) == 1
