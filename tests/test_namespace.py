"""The namespace without a kernel: tree, attributes, inodes, content, change."""
import errno
import os

import pytest

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
    import threading

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
