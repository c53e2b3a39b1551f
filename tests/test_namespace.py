"""The namespace without a kernel: tree, attributes, inodes, content, change."""
import errno
import json
import os
import threading

import pytest

from ifcbfs.core import settle
from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import BIN, DIR, FILE, ROOT_INO, FsError, Namespace, Options, inode_of
from ifcbfs.synth import write_bin, write_dataset


def walk(ns, ino=ROOT_INO):
    for name, node in ns.children(ino).items():
        yield node
        if node.is_dir:
            yield from walk(ns, node.ino)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    ids = write_dataset(root, n_bins=4, n_triggers=60, seed=3, style="mixed", mtime=1_700_000_000)
    return root, ids


def test_mirror_tree_shows_folders_that_lead_to_bins(tree):
    root, ids = tree
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "README.txt").write_text("not a bin")
    ns = Namespace(DataRoot(str(root)))
    top = ns.children(ROOT_INO)
    assert "empty" not in top and "README.txt" not in top
    bins = [n for n in walk(ns) if n.kind == BIN]
    assert sorted(n.name for n in bins) == sorted(ids)
    for b in bins:
        names = list(ns.children(b.ino))
        assert names == sorted(names)
        assert names[-2:] == ["adc.csv", "hdr.json"] and names[0] == f"{b.name}.hdr"
        assert all(n.endswith(".png") and n.startswith(b.name + "_") for n in names[1:-2])


def test_listing_and_sizes_decode_nothing_and_match_content(tree):
    root, _ = tree
    ns = Namespace(DataRoot(str(root)))
    files = [n for n in walk(ns) if n.kind == FILE]
    assert ns.decodes == 0
    for node in files:
        assert ns.mode(node) & 0o7777 == 0o644 and node.blocks == -(-node.size // 512)
        assert len(ns.read(node.ino)) == node.size
    assert ns.decodes == sum(1 for n in files if n.name.endswith(".png"))
    for node in walk(ns):
        if node.is_dir:
            assert ns.mode(node) & 0o7777 == 0o755


def test_inodes_are_unique_and_stable_across_instances(tree):
    root, _ = tree
    first = {n.path: n.ino for n in walk(Namespace(DataRoot(str(root))))}
    second = {n.path: n.ino for n in walk(Namespace(DataRoot(str(root))))}
    assert first == second
    assert len(set(first.values())) == len(first)
    assert all(ino > ROOT_INO for ino in first.values())
    assert inode_of("a/b") == first.get("a/b", inode_of("a/b"))


def test_mtime_of_bin_entries_is_the_newest_source_file(tmp_path):
    write_bin(tmp_path / "d", "D20240601T000000_IFCB124", 20, seed=1)
    os.utime(tmp_path / "d" / "D20240601T000000_IFCB124.hdr", ns=(1, 1_000_000_000))
    os.utime(tmp_path / "d" / "D20240601T000000_IFCB124.adc", ns=(1, 3_000_000_000))
    os.utime(tmp_path / "d" / "D20240601T000000_IFCB124.roi", ns=(1, 2_000_000_000))
    ns = Namespace(DataRoot(str(tmp_path / "d")))
    b = ns.lookup(ROOT_INO, "D20240601T000000_IFCB124")
    assert b.mtime_ns == 3_000_000_000
    assert {n.mtime_ns for n in ns.children(b.ino).values()} == {3_000_000_000}


def test_lookup_of_missing_names_and_files_as_folders(tree):
    root, ids = tree
    ns = Namespace(DataRoot(str(root)))
    with pytest.raises(FsError) as err:
        ns.lookup(ROOT_INO, "nope")
    assert err.value.errno == errno.ENOENT
    f = next(n for n in walk(ns) if n.kind == FILE)
    with pytest.raises(FsError) as err:
        ns.children(f.ino)
    assert err.value.errno == errno.ENOTDIR
    with pytest.raises(FsError) as err:
        ns.node(123456789)
    assert err.value.errno == errno.ENOENT


def test_flat_layout_keeps_the_first_of_two_bins_with_one_id_and_logs_the_other(tmp_path, caplog):
    write_bin(tmp_path / "a", "D20240601T000000_IFCB124", 30, seed=1)
    write_bin(tmp_path / "b", "D20240601T000000_IFCB124", 10, seed=2)
    write_bin(tmp_path / "b", "D20240601T002000_IFCB124", 10, seed=3)
    ns = Namespace(DataRoot(str(tmp_path)), Options(layout="flat"))
    top = ns.children(ROOT_INO)
    assert list(top) == ["D20240601T000000_IFCB124", "D20240601T002000_IFCB124"]
    assert top["D20240601T000000_IFCB124"].files.folder == "a"
    assert "D20240601T000000_IFCB124 is in both a and b" in caplog.text


def test_unreadable_bin_gives_its_errno_for_that_bin_only(tree, monkeypatch):
    root, ids = tree
    ns = Namespace(DataRoot(str(root)))
    bins = [n for n in walk(ns) if n.kind == BIN]  # noqa: F841 (walk loads them)
    ns2 = Namespace(DataRoot(str(root)))
    real_open = os.open

    def guarded(path, *a, **k):
        if str(path).endswith(ids[0] + ".adc"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", guarded)
    nodes = [n for n in _dirs_and_bins(ns2)]
    bad = [n for n in nodes if n.kind == BIN and n.name == ids[0]][0]
    with pytest.raises(FsError) as err:
        ns2.children(bad.ino)
    assert err.value.errno == errno.EACCES
    good = [n for n in nodes if n.kind == BIN and n.name == ids[1]][0]
    assert ns2.children(good.ino)


def _dirs_and_bins(ns, ino=ROOT_INO):
    for node in ns.children(ino).values():
        yield node
        if node.kind == DIR:
            yield from _dirs_and_bins(ns, node.ino)


def test_refresh_notices_a_growing_bin_and_new_bins(tmp_path):
    full = tmp_path / "full"
    write_bin(full, "D20240601T000000_IFCB124", 200, seed=5, image_fraction=0.8)
    live = tmp_path / "live"
    live.mkdir()
    stem = "D20240601T000000_IFCB124"
    hdr = (full / f"{stem}.hdr").read_bytes()
    adc = (full / f"{stem}.adc").read_bytes().splitlines(keepends=True)
    roi = (full / f"{stem}.roi").read_bytes()
    (live / f"{stem}.hdr").write_bytes(hdr)
    (live / f"{stem}.adc").write_bytes(b"".join(adc[:50]))
    (live / f"{stem}.roi").write_bytes(roi[:1000])
    ns = Namespace(DataRoot(str(live)))
    b = ns.lookup(ROOT_INO, stem)
    before = {n: c.size for n, c in ns.children(b.ino).items()}
    (live / f"{stem}.adc").write_bytes(b"".join(adc))
    (live / f"{stem}.roi").write_bytes(roi)
    os.utime(live / f"{stem}.adc", ns=(1, 10**18))
    changes = ns.refresh()
    after = {n: c.size for n, c in ns.children(b.ino).items()}
    assert len(after) > len(before) and after["adc.csv"] > before["adc.csv"]
    assert ("inode", b.ino) in changes
    for name, node in ns.children(b.ino).items():
        assert len(ns.read(node.ino)) == node.size
    write_bin(live, "D20240601T002000_IFCB124", 5, seed=1)
    os.utime(live, ns=(1, 10**18))
    ns.refresh()
    assert "D20240601T002000_IFCB124" in ns.children(ROOT_INO)


def test_refresh_drops_removed_bins(tmp_path):
    write_bin(tmp_path, "D20240601T000000_IFCB124", 5, seed=1)
    write_bin(tmp_path, "D20240601T002000_IFCB124", 5, seed=1)
    ns = Namespace(DataRoot(str(tmp_path)))
    gone = ns.lookup(ROOT_INO, "D20240601T002000_IFCB124")
    ns.children(gone.ino)
    for ext in ("hdr", "adc", "roi"):
        (tmp_path / f"D20240601T002000_IFCB124.{ext}").unlink()
    os.utime(tmp_path, ns=(1, 10**18))
    changes = ns.refresh()
    assert ("entry", ROOT_INO, "D20240601T002000_IFCB124") in changes
    assert gone.ino not in ns.nodes
    assert list(ns.children(ROOT_INO)) == ["D20240601T000000_IFCB124"]


def test_content_cache_is_bounded(tree):
    root, _ = tree
    ns = Namespace(DataRoot(str(root)), Options(cache_size=50_000))
    for node in walk(ns):
        if node.kind == FILE:
            ns.read(node.ino)
            assert ns.cache.used <= 50_000


def test_a_fifo_named_like_a_bin_file_never_blocks(tmp_path):
    write_bin(tmp_path, "D20240601T000000_IFCB124", 10, seed=1)
    ns = Namespace(DataRoot(str(tmp_path)))
    b = ns.lookup(ROOT_INO, "D20240601T000000_IFCB124")
    ns.children(b.ino)
    adc = tmp_path / "D20240601T000000_IFCB124.adc"
    adc.unlink()
    os.mkfifo(adc)  # opening it for reading would wait for a writer forever
    done = threading.Event()

    def work():
        ns.refresh()
        for node in ns.children(b.ino).values():
            ns.read(node.ino)
        done.set()

    threading.Thread(target=work, daemon=True).start()
    assert done.wait(10), "refresh or read blocked on a FIFO"
    assert "adc.csv" not in ns.children(b.ino)


def unloaded_bins(ns, ino=ROOT_INO):
    """Every bin folder of the tree, listing folders but loading no bin."""
    for node in ns.children(ino).values():
        if node.kind == BIN:
            yield node
        elif node.kind == DIR:
            yield from unloaded_bins(ns, node.ino)


class SlowRoot(DataRoot):
    """A data root whose reads of one folder, or of any bin, wait until released."""

    def __init__(self, root, folder=None, bins=False):
        super().__init__(root)
        self.slow_folder, self.slow_bins = folder, bins
        self.entered, self.release = threading.Event(), threading.Event()

    def _wait(self):
        self.entered.set()
        assert self.release.wait(30), "never released"

    def scan(self, folder="", known=frozenset()):
        if folder == self.slow_folder:
            self._wait()
        return super().scan(folder, known)

    def stat_bin(self, files):
        if self.slow_bins:
            self._wait()
        return super().stat_bin(files)


def _in_thread(target, *args):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", target(*args)), daemon=True)
    thread.start()
    return thread, out


def test_a_request_never_waits_on_another_ones_source_read(tree):
    """While one folder's source read hangs (a slow disk, a link back into the mount), every
    other folder and bin still lists: the tree is locked only to publish what was read."""
    root, ids = tree
    source = SlowRoot(str(root), folder="slow")
    (root / "slow").mkdir(exist_ok=True)
    write_bin(root / "slow", "D20240601T000000_IFCB124", 5, seed=1)
    ns = Namespace(source)
    top = ns.children(ROOT_INO)
    stuck, out = _in_thread(ns.children, top["slow"].ino)
    assert source.entered.wait(10)
    def others():
        return [n for top_node in top.values() if top_node.name != "slow"
                for n in ([top_node] + (list(walk(ns, top_node.ino)) if top_node.is_dir else []))]

    meanwhile, listed = _in_thread(others)
    meanwhile.join(10)
    assert not meanwhile.is_alive(), "a listing waited on another folder's source read"
    assert sum(n.kind == BIN for n in listed["value"]) == len(ids)
    assert stuck.is_alive()
    source.release.set()
    stuck.join(10)
    assert list(out["value"]) == ["D20240601T000000_IFCB124"]
    assert ns.children(top["slow"].ino) is out["value"]


def test_a_refresh_reading_the_source_holds_up_no_request(tree):
    root, ids = tree
    source = SlowRoot(str(root))
    ns = Namespace(source)
    bins = list(unloaded_bins(ns))
    ns.children(bins[0].ino)  # one loaded bin: a full refresh (SIGHUP) re-checks it
    source.slow_bins = True
    refreshing, _ = _in_thread(ns.refresh, True)
    assert source.entered.wait(10)
    meanwhile, loaded = _in_thread(lambda: all(ns.children(b.ino) for b in bins))
    meanwhile.join(10)
    assert not meanwhile.is_alive(), "loading a bin waited on the refresh's source read"
    assert loaded["value"] and refreshing.is_alive()
    source.release.set()
    refreshing.join(10)
    assert not refreshing.is_alive()


def test_status_counts_bins_listed_and_loaded_as_the_tree_changes(tmp_path):
    for hour in range(3):
        write_bin(tmp_path, f"D20240601T0{hour}0000_IFCB124", 3, seed=hour)
    ns = Namespace(DataRoot(str(tmp_path)))
    assert ns.status() == "0 bins listed, 0 loaded"
    top = ns.children(ROOT_INO)
    assert ns.status() == "3 bins listed, 0 loaded"
    ns.children(top["D20240601T000000_IFCB124"].ino)
    ns.children(top["D20240601T010000_IFCB124"].ino)
    assert ns.status() == "3 bins listed, 2 loaded"
    for ext in ("hdr", "adc", "roi"):
        (tmp_path / f"D20240601T000000_IFCB124.{ext}").unlink()
    os.utime(tmp_path, ns=(1, 10**18))
    ns.refresh()
    assert ns.status() == "2 bins listed, 1 loaded"
    assert ns.bins_listed == sum(n.kind == BIN for n in ns.nodes.values())


def test_a_last_adc_line_without_its_newline_gets_its_row_once_the_bin_settles(tmp_path, monkeypatch):
    """While a bin may still grow, an unterminated last line has no adc.csv row; once its files
    have been left alone for SETTLE seconds, the watcher's refresh gives it one, once."""
    stem = "D20240601T000000_IFCB124"
    write_bin(tmp_path, stem, 8, seed=3)
    adc = tmp_path / f"{stem}.adc"
    whole = adc.read_bytes()
    adc.write_bytes(whole.rstrip(b"\n"))
    monkeypatch.setattr(settle, "SETTLE", 3600.0)  # the files were just written: still growing
    ns = Namespace(DataRoot(str(tmp_path)))
    b = ns.lookup(ROOT_INO, stem)
    growing = ns.children(b.ino)
    assert ns.read(growing["adc.csv"].ino).count(b"\n") == 1 + 7
    assert json.loads(ns.read(growing["hdr.json"].ino))["n_triggers"] == 7
    assert ns.refresh() == []  # unchanged and not settled: nothing to do
    monkeypatch.setattr(settle, "SETTLE", 0.0)
    changes = ns.refresh()
    assert ("inode", growing["adc.csv"].ino) in changes and ("inode", growing["hdr.json"].ino) in changes
    final = ns.children(b.ino)
    assert ns.read(final["adc.csv"].ino).count(b"\n") == 1 + 8
    assert json.loads(ns.read(final["hdr.json"].ino))["n_triggers"] == 8
    assert [n for n in final if n.endswith(".png")] == [n for n in growing if n.endswith(".png")]
    assert ns.refresh() == []  # settled once and for all


def test_flat_layout_sees_new_changed_and_removed_bins_on_refresh(tmp_path):
    """The flat root is built from every source folder; a refresh reads again only the folders
    whose mtime changed (and walks new ones), as the mirror layout does."""
    a, b, c = "D20240601T000000_IFCB124", "D20250101T000000_IFCB124", "D20240601T010000_IFCB124"
    day = tmp_path / "2024" / "D20240601"
    write_bin(day, a, 3, seed=1)
    ns = Namespace(DataRoot(str(tmp_path)), Options(layout="flat"))
    assert list(ns.children(ROOT_INO)) == [a]
    assert ns.refresh() == []  # nothing changed: nothing read again, nothing to forget
    write_bin(tmp_path / "2025" / "D20250101", b, 3, seed=2)  # in a new folder
    write_bin(day, c, 3, seed=3)  # next to a
    os.utime(tmp_path, ns=(1, 10**18))
    os.utime(day, ns=(1, 10**18))
    changes = ns.refresh()
    assert list(ns.children(ROOT_INO)) == [a, c, b] and ("inode", ROOT_INO) in changes
    for ext in ("hdr", "adc", "roi"):
        (tmp_path / "2025" / "D20250101" / f"{b}.{ext}").unlink()
    os.utime(tmp_path / "2025" / "D20250101", ns=(2, 10**18))
    changes = ns.refresh()
    assert list(ns.children(ROOT_INO)) == [a, c] and ("entry", ROOT_INO, b) in changes
    assert ns.status() == "2 bins listed, 0 loaded"
