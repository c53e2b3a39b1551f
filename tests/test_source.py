"""Finding bins under a data root, one folder at a time (SPEC sections 1 and 7)."""
import errno
import json
import logging
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager

import pytest

from ifcbfs.core.bin import Bin
from ifcbfs.core.errors import BinError
from ifcbfs.core.source import DataRoot, SourceUnreadable

D1, D2, D3 = "D20130526T095207_IFCB013", "D20130526T113000_IFCB013", "D20130527T000000_IFCB013"
I1 = "IFCB5_2012_028_081515"
ADC_LINE = "1,4.6," + "0," * 11 + "1,1,2,2,0," + "0," * 5 + "0\n"   # one v2 line with a 2x2 image


def make_bin(folder, bin_id, exts=("hdr", "adc", "roi")):
    os.makedirs(folder, exist_ok=True)
    for ext in exts:
        with open(os.path.join(folder, f"{bin_id}.{ext}"), "w") as f:
            f.write({"hdr": "softwareVersion: x\n", "adc": ADC_LINE, "roi": "abcd"}[ext])


def bins_of(root, folder=""):
    return sorted((f.folder, str(f.bin_id)) for f in root.walk(folder))


class TookTooLong(BaseException):
    """Not an OSError (as TimeoutError is), so no `except OSError` in the code under test hides it."""


@contextmanager
def time_limit(seconds: float):
    """Fail instead of hanging."""
    def expired(signum, frame):
        raise TookTooLong(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def scandirs(monkeypatch):
    """The paths os.scandir is called on."""
    seen = []
    real = os.scandir

    def scandir(path="."):
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return seen


def test_layouts(tmp_path):
    make_bin(tmp_path / "2013" / "D20130526", D1)
    make_bin(tmp_path / "2013" / "D20130526", D2)
    make_bin(tmp_path / "D2013" / "D201305" / "D20130527", D3)
    make_bin(tmp_path / "IFCB5_2012_028", I1)
    make_bin(tmp_path, "D20200101T000000_IFCB122")
    root = DataRoot(str(tmp_path))
    assert bins_of(root) == [
        ("", "D20200101T000000_IFCB122"),
        ("2013/D20130526", D1), ("2013/D20130526", D2),
        ("D2013/D201305/D20130527", D3),
        ("IFCB5_2012_028", I1),
    ]
    top = root.scan("")
    assert top.folders == ("2013", "D2013", "IFCB5_2012_028")
    assert list(top.bins) == ["D20200101T000000_IFCB122"]
    assert bins_of(root, "2013") == [("2013/D20130526", D1), ("2013/D20130526", D2)]
    files = root.scan("2013/D20130526").bins[D1]
    assert files.folder == "2013/D20130526"
    assert files.hdr.path == str(tmp_path / "2013" / "D20130526" / f"{D1}.hdr")
    assert (files.hdr.size, files.adc.size, files.roi.size) == (19, len(ADC_LINE), 4)
    assert files.mtime_ns == max(f.mtime_ns for f in (files.hdr, files.adc, files.roi))


def test_the_bins_of_the_real_data_are_found(ifcb_data, expected):
    root = DataRoot(str(ifcb_data))
    found = bins_of(root)
    assert sorted(b for f, b in found if f.startswith("bins/")) == sorted(expected["bins"])
    assert sorted(f"{b}.hdr" for f, b in found if f == "headers") == sorted(expected["headers"])
    assert ("odd/no-roi", I1) in found


@pytest.fixture
def wide_tree(tmp_path):
    for year in (2013, 2014, 2015):
        for day in range(1, 21):
            make_bin(tmp_path / str(year) / f"D{year}01{day:02d}", f"D{year}01{day:02d}T000000_IFCB013")
    return tmp_path


def test_scan_reads_one_folder_and_probes_each_subfolder_only_to_its_first_bin(wide_tree, scandirs):
    root = DataRoot(str(wide_tree))
    top = root.scan("")
    assert top.folders == ("2013", "2014", "2015") and top.bins == {}
    scanned = {os.path.relpath(p, wide_tree) for p in scandirs}
    assert scanned <= {".", "2013", "2014", "2015", "2013/D20130101", "2014/D20140101", "2015/D20150101"}
    assert len(scandirs) <= 7   # not 64: the tree is not walked
    scandirs.clear()
    day = root.scan("2014/D20140105")
    assert list(day.bins) == ["D20140105T000000_IFCB013"] and day.folders == ()
    assert [os.path.relpath(p, wide_tree) for p in scandirs] == ["2014/D20140105"]


def test_walk_is_lazy(wide_tree, scandirs):
    walk = DataRoot(str(wide_tree)).walk()
    first = next(walk)
    assert str(first.bin_id) == "D20130101T000000_IFCB013"
    scanned = {os.path.relpath(p, wide_tree) for p in scandirs}
    assert not any(p.startswith(("2014/", "2015/")) and p not in ("2014/D20140101", "2015/D20150101")
                   for p in scanned)
    assert len(list(walk)) == 59


def test_skip_and_beads_are_left_out_by_default(tmp_path):
    make_bin(tmp_path / "2013" / "D20130526", D1)
    make_bin(tmp_path / "skip", D2)
    make_bin(tmp_path / "2013" / "beads", D3)
    make_bin(tmp_path / "2013" / "skip" / "deeper", "D20130528T000000_IFCB013")
    default = DataRoot(str(tmp_path))
    assert bins_of(default) == [("2013/D20130526", D1)]
    assert default.scan("").folders == ("2013",) and default.scan("2013").folders == ("D20130526",)
    everything = DataRoot(str(tmp_path), include_skipped=True)
    assert bins_of(everything) == [("2013/D20130526", D1), ("2013/beads", D3),
                                   ("2013/skip/deeper", "D20130528T000000_IFCB013"), ("skip", D2)]


def test_corrected_adc_files_in_adcmod_are_used(tmp_path):
    day = tmp_path / "data" / "2013" / "D20130526"
    make_bin(day, D1)
    make_bin(day, D2)
    make_bin(day, D3, exts=("hdr", "roi"))
    mod = tmp_path / "adcmod" / "D20130526"
    mod.mkdir(parents=True)
    (mod / f"{D1}.adc.mod").write_text(ADC_LINE + ADC_LINE.replace("1,4.6", "2,4.7", 1))
    (mod / f"{D3}.adc.mod").write_text(ADC_LINE)
    (tmp_path / "adcmod" / "D20130527").mkdir()
    root = DataRoot(str(tmp_path / "data"))
    found = root.scan("2013/D20130526").bins
    assert found[D1].adc.path == str(mod / f"{D1}.adc.mod")
    assert found[D2].adc.path == str(day / f"{D2}.adc")            # no correction: the raw .adc
    assert found[D3].adc.path == str(mod / f"{D3}.adc.mod")         # even without a raw .adc
    b = Bin.load(found[D1])
    assert b.n_triggers == 2 and b.read("adc.csv").splitlines()[2].startswith(b"2,2,4.7,")
    assert root.stat_bin(found[D1]).adc.path == str(mod / f"{D1}.adc.mod")
    # adcmod is the data root's sibling: a root elsewhere does not see it
    assert DataRoot(str(tmp_path / "data" / "2013")).scan("D20130526").bins[D1].adc.path == str(day / f"{D1}.adc")


def test_bins_with_missing_files_are_still_found(tmp_path):
    make_bin(tmp_path, D1, exts=("hdr", "roi"))
    make_bin(tmp_path, D2, exts=("hdr", "adc"))
    make_bin(tmp_path, D3, exts=("roi",))
    make_bin(tmp_path, I1, exts=("adc",))
    found = DataRoot(str(tmp_path)).scan("").bins
    assert sorted(found) == sorted([D1, D2, D3, I1])
    assert found[D1].adc is None and found[D1].roi is not None
    assert found[D2].roi is None and found[D2].adc is not None
    assert found[D3].hdr is None and found[D3].adc is None
    assert found[I1].hdr is None and found[I1].roi is None


def test_stray_files_and_folders_are_ignored(tmp_path):
    make_bin(tmp_path / "day", D1)
    for name in ("README.txt", f"{D1}.png", f"{D1}.hdr.bak", f"{D1}.adc.mod", "notabin.hdr", "D20130230T000000_IFCB013.hdr",
                 "Thumbs.db", f"{D2}.HDR", ".hidden.hdr", "hdr", "x.roi"):
        (tmp_path / "day" / name).write_text("x")
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("x")
    (tmp_path / "notes" / "junk.adc").write_text("x")
    make_bin(tmp_path / ".snapshot", D2)
    (tmp_path / f"{D3}.hdr").mkdir()      # a folder named like a bin file
    root = DataRoot(str(tmp_path))
    assert root.scan("").folders == ("day",)
    assert list(root.scan("day").bins) == [D1]
    assert bins_of(root) == [("day", D1)]


@contextmanager
def links_allowed(tmp_path):
    try:
        os.symlink(".", tmp_path / ".probe")
    except OSError as err:
        pytest.skip(f"no symlinks here: {err}")
    os.remove(tmp_path / ".probe")
    yield


def test_symlink_loops_do_not_hang(tmp_path):
    with links_allowed(tmp_path):
        make_bin(tmp_path / "a", D1)
        make_bin(tmp_path / "b", D2)
        os.symlink("..", tmp_path / "a" / "up")                 # to the parent: the root
        os.symlink(".", tmp_path / "a" / "self")
        os.symlink(str(tmp_path), tmp_path / "b" / "root")      # absolute
        os.symlink(str(tmp_path.parent), tmp_path / "b" / "above")
        for name in ("l1", "l2", "l3"):                         # mutual links between siblings
            os.symlink("../b", tmp_path / "a" / name)
            os.symlink("../a", tmp_path / "b" / name)
        os.symlink("nowhere", tmp_path / "a" / "dangling")
        root = DataRoot(str(tmp_path))
        with time_limit(10):
            found = bins_of(root)
        assert len(found) == len(set(found)) <= 8
        assert ("a", D1) in found and ("b", D2) in found
        # links that are no loops are followed
        assert ("a/l1", D2) in found and ("b/l2", D1) in found
        assert "up" not in root.scan("a").folders and "self" not in root.scan("a").folders
        assert root.scan("a/l1").folders == ()      # from a/l1 (= b), every link leads back


def test_a_link_to_a_folder_outside_the_root_is_followed(tmp_path):
    with links_allowed(tmp_path):
        make_bin(tmp_path / "elsewhere" / "D20130526", D1)
        (tmp_path / "root").mkdir()
        os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "2013")
        assert bins_of(DataRoot(str(tmp_path / "root"))) == [("2013/D20130526", D1)]


def test_unreadable_folder_is_source_unreadable(tmp_path, monkeypatch, caplog):
    make_bin(tmp_path / "a", D1)
    make_bin(tmp_path / "b", D2)
    make_bin(tmp_path / "c", D3)
    locked = str(tmp_path / "b")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    root = DataRoot(str(tmp_path))
    with pytest.raises(SourceUnreadable) as info:
        root.scan("b")
    assert info.value.errno == errno.EACCES and locked in str(info.value)
    assert isinstance(info.value, BinError)
    assert root.scan("").folders == ("a", "b", "c")   # shown: listing it says why it cannot be read
    with caplog.at_level(logging.WARNING, logger="ifcbfs"):
        assert bins_of(root) == [("a", D1), ("c", D3)]
    assert any(locked in r.getMessage() for r in caplog.records)


def test_a_missing_root_is_source_unreadable(tmp_path):
    with pytest.raises(SourceUnreadable) as info:
        DataRoot(str(tmp_path / "absent")).scan("")
    assert info.value.errno == errno.ENOENT
    assert list(DataRoot(str(tmp_path / "absent")).walk()) == []


def as_unprivileged(fn):
    """fn() as an ordinary user: directly when not root, else in a forked child that drops to nobody."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        except BaseException as err:   # report everything to the parent
            os.write(w, json.dumps({"child error": repr(err)}).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(out or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


def test_unreadable_folders_and_files_with_real_permissions():
    if not hasattr(os, "fork"):
        pytest.skip("needs fork to drop root privileges")
    base = tempfile.mkdtemp(prefix="ifcbfs-perm-")
    try:
        os.chmod(base, 0o755)
        data = os.path.join(base, "data")
        make_bin(os.path.join(data, "open"), D1)
        make_bin(os.path.join(data, "locked"), D2)
        make_bin(os.path.join(data, "files"), D3)
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        os.chmod(os.path.join(data, "locked"), 0)
        os.chmod(os.path.join(data, "files", f"{D3}.hdr"), 0)
        os.chmod(os.path.join(data, "files", f"{D3}.roi"), 0)

        def probe():
            root = DataRoot(data)
            out = {"folders": list(root.scan("").folders), "bins": [str(f.bin_id) for f in root.walk()]}
            try:
                root.scan("locked")
                out["locked"] = "readable"
            except SourceUnreadable as err:
                out["locked"] = err.errno
            files = root.scan("files").bins[D3]
            try:
                Bin.load(files)
                out["hdr"] = "readable"
            except SourceUnreadable as err:
                out["hdr"] = err.errno
            return out

        result = as_unprivileged(probe)
        assert result == {"folders": ["files", "locked", "open"], "bins": [D3, D1],
                          "locked": errno.EACCES, "hdr": errno.EACCES}
    finally:
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                os.chmod(os.path.join(dirpath, name), 0o755, follow_symlinks=False)
        os.chmod(os.path.join(base, "data", "locked"), 0o755)
        shutil.rmtree(base)


def test_stat_bin_sees_the_files_as_they_are_now(tmp_path):
    make_bin(tmp_path, D1, exts=("hdr", "adc"))
    root = DataRoot(str(tmp_path))
    files = root.scan("").bins[D1]
    with open(tmp_path / f"{D1}.adc", "a") as f:
        f.write(ADC_LINE)
    (tmp_path / f"{D1}.roi").write_bytes(b"x" * 10)
    now = root.stat_bin(files)
    assert now.adc.size == 2 * len(ADC_LINE) and now.roi.size == 10 and now.hdr == files.hdr
    os.remove(tmp_path / f"{D1}.hdr")
    assert root.stat_bin(files).hdr is None


def test_links_into_the_excluded_mountpoint_are_never_followed_and_logged_once(tmp_path, caplog):
    """The mountpoint lies outside the source, but links can lead into it: the walk never
    enters it (its bins would be the mount's own folders), by a folder link, a link to a folder
    above it, or a bin file link; each such link is logged once."""
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    make_bin(src / "2013" / "D20130526", D1)
    mnt = elsewhere / "mnt"
    make_bin(mnt / "D20130527", D3)  # stands for what the mount would show
    os.symlink(mnt, src / "into")
    os.symlink(elsewhere, src / "above")
    os.symlink(mnt / "D20130527" / f"{D3}.adc", src / "2013" / "D20130526" / f"{D2}.adc")
    root = DataRoot(str(src), exclude=str(mnt))
    with caplog.at_level("WARNING", logger="ifcbfs"):
        for _ in range(2):
            assert bins_of(root) == [("2013/D20130526", D1)]
            assert root.scan("").folders == ("2013",)
    lines = [r.getMessage() for r in caplog.records if "leads into the mountpoint" in r.getMessage()]
    assert sorted(line.split()[0] for line in lines) == sorted(
        [str(src / "into"), str(src / "above" / "mnt"), str(src / "2013" / "D20130526" / f"{D2}.adc")])
    # without `exclude` (export, the library) the same tree is walked as before
    assert ("into/D20130527", D3) in bins_of(DataRoot(str(src)))
