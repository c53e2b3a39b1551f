"""The persistent index: a warm index lists without parsing, and no fault changes a byte."""
import logging
import os
import shutil
import subprocess

import pytest

from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import ROOT_INO, Namespace, Options
from ifcbfs.index import Index
from ifcbfs.synth import write_bin, write_dataset

OLD = 1_600_000_000


def snapshot(ns, ino=ROOT_INO, out=None):
    """Every path of the tree with its inode, size and bytes."""
    out = {} if out is None else out
    for node in ns.listing(ino):
        if node.is_dir:
            out[node.path] = (node.ino, "dir")
            snapshot(ns, node.ino, out)
        else:
            out[node.path] = (node.ino, node.size, ns.read(node.ino))
    return out


def mount_ns(root, index_path, **options):
    opts = Options(**options)
    index = Index(str(index_path), opts.signature) if index_path else None
    return Namespace(DataRoot(str(root)), opts, index), index


@pytest.fixture
def tree(tmp_path):
    write_dataset(tmp_path / "data", n_bins=5, n_triggers=60, seed=11, style="mixed", mtime=OLD)
    return tmp_path / "data"


@pytest.fixture
def reference(tree):
    return snapshot(mount_ns(tree, None)[0])


def warm(tree, path, **options):
    ns, index = mount_ns(tree, path, **options)
    snap = snapshot(ns)
    index.close()
    return ns, snap


def test_a_warm_index_lists_without_parsing_and_changes_nothing(tree, tmp_path, reference):
    path = tmp_path / "idx.sqlite"
    first, snap = warm(tree, path)
    assert first.parses == 5 and snap == reference
    second, index = mount_ns(tree, path)
    listed = {n.path: (n.ino, n.size) for b in _bins(second) for n in second.listing(b.ino)}
    assert second.parses == 0 and second.decodes == 0 and index.hits == 5
    assert listed == {p: v[:2] for p, v in reference.items() if len(v) == 3}
    assert snapshot(second) == reference and second.parses == 0


def test_a_record_is_never_used_once_its_files_changed(tree, tmp_path):
    path = tmp_path / "idx.sqlite"
    warm(tree, path)
    adc = next(tree.rglob("*.adc"))
    with open(adc, "ab") as f:
        f.write(adc.read_bytes().splitlines(keepends=True)[0])
    fresh = snapshot(mount_ns(tree, None)[0])
    ns, _ = mount_ns(tree, path)
    assert snapshot(ns) == fresh and ns.parses == 1
    os.utime(adc, ns=(1, os.stat(adc).st_mtime_ns))  # same size, same mtime, new inode
    copy = adc.with_suffix(".tmp")
    shutil.copy2(adc, copy)
    os.replace(copy, adc)
    ns, _ = mount_ns(tree, path)
    assert snapshot(ns) == fresh and ns.parses >= 1


@pytest.mark.parametrize("damage", ["junk", "truncated", "empty"])
def test_a_damaged_index_is_started_again(tree, tmp_path, reference, damage, caplog):
    path = tmp_path / "idx.sqlite"
    warm(tree, path)
    data = path.read_bytes()
    path.write_bytes({"junk": b"not a database at all" * 100, "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])
    with caplog.at_level(logging.WARNING, "ifcbfs"):
        ns, index = mount_ns(tree, path)
        assert snapshot(ns) == reference
    assert len([r for r in caplog.records if "index" in r.getMessage()]) <= 1
    index.close()
    again, _ = mount_ns(tree, path)
    assert snapshot(again) == reference and again.parses == 0  # rebuilt, and warm again


def test_an_index_of_other_options_or_version_is_not_used(tree, tmp_path):
    path = tmp_path / "idx.sqlite"
    warm(tree, path, stitch="on")
    ns, _ = mount_ns(tree, path, stitch="off")
    assert snapshot(ns) == snapshot(mount_ns(tree, None, stitch="off")[0]) and ns.parses == 5


def test_an_unusable_place_serves_the_same_bytes(tree, tmp_path, reference, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, "ifcbfs"):
        ns, index = mount_ns(tree, blocker / "idx.sqlite")
        assert not index.usable and snapshot(ns) == reference
    assert len([r for r in caplog.records if "index" in r.getMessage()]) == 1


def test_an_index_deleted_while_in_use(tree, tmp_path, reference):
    path = tmp_path / "idx.sqlite"
    ns, index = mount_ns(tree, path)
    first = next(iter(_bins(ns)))
    ns.listing(first.ino)
    for f in tmp_path.glob("idx.sqlite*"):
        f.unlink()
    assert snapshot(ns) == reference
    index.close()


def test_a_full_disk_stops_writing_and_serves_the_same_bytes(tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    write_dataset(tmp_path / "data", n_bins=40, n_triggers=400, seed=12, mtime=OLD)
    reference = snapshot(mount_ns(tmp_path / "data", None)[0])
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        with caplog.at_level(logging.WARNING, "ifcbfs"):
            ns, index = mount_ns(tmp_path / "data", small / "idx.sqlite")
            assert snapshot(ns) == reference
            index.close()
        assert len([r for r in caplog.records if "index" in r.getMessage()]) == 1
        again, index = mount_ns(tmp_path / "data", small / "idx.sqlite")
        assert snapshot(again) == reference
        index.close()
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_growing_bin_is_indexed_as_it_is_now(tmp_path):
    stem = "D20240601T000000_IFCB124"
    write_bin(tmp_path / "live", stem, 30, seed=3)
    path = tmp_path / "idx.sqlite"
    warm(tmp_path / "live", path)
    write_bin(tmp_path / "live", stem, 60, seed=3)
    ns, _ = mount_ns(tmp_path / "live", path)
    assert snapshot(ns) == snapshot(mount_ns(tmp_path / "live", None)[0])


def _bins(ns, ino=ROOT_INO):
    for node in ns.listing(ino):
        if node.kind == "bin":
            yield node
        elif node.kind == "dir":
            yield from _bins(ns, node.ino)


def test_ifcbfs_index_prebuilds_what_a_mount_uses(tree, tmp_path, reference, capsys):
    from ifcbfs.cli import main, parse_args, open_index

    assert main(["index", str(tree)]) == 0
    assert "indexed 5 bins (5 parsed" in capsys.readouterr().err
    cfg = parse_args([str(tree), str(tmp_path / "mnt")])
    index = open_index(cfg)
    ns = Namespace(DataRoot(str(tree)), cfg.options, index)
    assert snapshot(ns) == reference and ns.parses == 0 and index.hits == 5
    assert main(["index", str(tree / "absent")]) == 1
    assert main(["index", str(tree), "-o", "stitch=sideways"]) == 2
    assert "stitch='sideways'" in capsys.readouterr().err


def test_ifcbfs_index_keeps_the_views_and_takes_the_filters(tree, tmp_path, capsys):
    from ifcbfs.cli import main, open_index, parse_args

    options = "mosaic=300x200@50,zip,instrument=124"
    assert main(["index", str(tree), "-o", options]) == 0
    assert "indexed 3 bins (3 parsed" in capsys.readouterr().err  # the IFCB124 bins only
    cfg = parse_args([str(tree), str(tmp_path / "mnt"), "-o", options])
    index = open_index(cfg)
    ns = Namespace(DataRoot(str(tree), bin_filter=cfg.bin_filter), cfg.options, index)
    fresh = Namespace(DataRoot(str(tree), bin_filter=cfg.bin_filter), cfg.options)
    assert snapshot(ns) == snapshot(fresh) and ns.parses == 0 and index.hits == 3
    assert any(path.endswith("/mosaic/page-001.png") for path in snapshot(ns))
    assert open_index(parse_args([str(tree), "/m", "-o", "mosaic"])).path != index.path
