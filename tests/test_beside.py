"""Products in bin folders (SPEC section 9), through the namespace (no kernel): exact bytes and
sizes, the highest version, blob masks, the product index, and every bad input giving one log
line per bin with the product absent and the bin's other files exact."""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import pytest

import ifcbfs.logonce
from ifcbfs.catalog import Catalog
from ifcbfs.core import beside
from ifcbfs.core.adc import parse_adc
from ifcbfs.core.classes import class_scores_csv, classes_csv, read_class_file
from ifcbfs.core.products import CLASS_H5, CLASS_MAT
from ifcbfs.core.source import DataRoot
from ifcbfs.crawler import Crawler, attach
from ifcbfs.fs.namespace import ROOT_INO, Namespace, Options
from ifcbfs.index import Index, default_path
from ifcbfs.synth import write_dataset
from productfiles import (LABELS, bins_of, needs_h5py, needs_scipy, scores_for, write_blobs, write_class_mat,
                          write_features, write_h5, write_mat)

REAL_BIN = "D20220522T003051_IFCB134"
D_BIN, D_BIN2 = "D20240601T000000_IFCB124", "D20240601T004000_IFCB124"


@pytest.fixture(autouse=True)
def fresh_log():
    ifcbfs.logonce._bad_bins.clear()  # each test sees its own once-per-bin lines


def tree(root, *products, index=None, **opts):
    """A namespace over `root` with product trees, after one pass of the product index."""
    data = DataRoot(str(root))
    options = Options(products=tuple((Path(p).name, str(p)) for p in products), **opts)
    catalog, views = attach(data, options, index)
    ns = Namespace(data, options, index, views)
    crawler = Crawler(ns, catalog) if catalog is not None else None
    if crawler is not None:
        crawler.run_pass()
    return ns, crawler


def folder(ns, path: str) -> dict:
    ino = ROOT_INO
    for part in path.split("/"):
        ino = ns.lookup(ino, part).ino
    return {n.name: n for n in ns.listing(ino)}


def contents(ns, path: str) -> dict:
    return {name: ns.content(n) for name, n in folder(ns, path).items() if not n.is_dir}


def lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def synth(tmp_path):
    """Two D bins (and an I bin) and an empty product tree."""
    root = tmp_path / "data"
    write_dataset(root, n_bins=3, n_triggers=40, seed=3, style="mixed")
    products = tmp_path / "cnn"
    products.mkdir()
    return root, products, bins_of(root)


# --- the real products ---------------------------------------------------------------------
@needs_h5py
def test_real_products_in_the_real_bin(ifcb_data, tmp_path):
    shutil.copytree(ifcb_data / "bins" / REAL_BIN, tmp_path / "data" / REAL_BIN)
    products = ifcb_data / "products"
    ns, _ = tree(tmp_path / "data", products)
    files = folder(ns, f"{REAL_BIN}/{REAL_BIN}")
    features = (products / f"{REAL_BIN}_fea_v2.csv").read_bytes()
    assert ns.content(files["features_v2.csv"]) == features and files["features_v2.csv"].size == len(features)
    assert files["features_v2.csv"].mtime_ns == max(os.stat(products / f"{REAL_BIN}_fea_v2.csv").st_mtime_ns,
                                                    files["hdr.json"].mtime_ns)
    cs = read_class_file((products / f"{REAL_BIN}_class.h5").read_bytes(), CLASS_H5)
    adc = parse_adc((ifcb_data / "bins" / REAL_BIN / f"{REAL_BIN}.adc").read_bytes(), "v2")
    targets = beside.adc_targets(adc)
    for name, make in (("class_scores.csv", class_scores_csv), ("classes.csv", classes_csv)):
        assert files[name].size == len(make(REAL_BIN, cs, targets))  # exact at listing
        assert ns.content(files[name]) == make(REAL_BIN, cs, targets)
    assert ns.content(files["classes.csv"]).decode().splitlines()[1].startswith(f"{REAL_BIN}_00002,Mesodinium_rubrum,")
    plain, _ = tree(tmp_path / "data")
    bare = contents(plain, f"{REAL_BIN}/{REAL_BIN}")
    assert {k: v for k, v in contents(ns, f"{REAL_BIN}/{REAL_BIN}").items() if k in bare} == bare


# --- products written here -----------------------------------------------------------------
@needs_h5py
@needs_scipy
def test_highest_version_wins_and_each_features_version_shows(synth):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    write_h5(products / f"{D_BIN}_class_v2.h5", layout=2, scores=scores_for(targets, seed=1), labels=LABELS, rois=targets)
    write_class_mat(products / "mat" / f"{D_BIN}_class_v4.mat", scores=scores_for(targets, seed=2), labels=LABELS,
                    rois=targets, thresholded=["unclassified"] * len(targets))
    write_h5(products / f"{D_BIN}_class.h5", scores=scores_for(targets, seed=3), labels=LABELS, rois=targets)
    v2 = write_features(products / f"{D_BIN}_fea_v2.csv", targets)
    v4 = write_features(products / "py" / f"{D_BIN}_features_v4.csv", targets[:3])
    multi = write_features(products / f"{D_BIN}_multiblob_v2.csv", targets[:2])
    ns, _ = tree(root, products)
    files = contents(ns, f"2024/D20240601/{D_BIN}")
    assert (files["features_v2.csv"], files["features_v4.csv"], files["multiblob_v2.csv"]) == (v2, v4, multi)
    mat = read_class_file((products / "mat" / f"{D_BIN}_class_v4.mat").read_bytes(), CLASS_MAT)
    assert files["classes.csv"] == classes_csv(D_BIN, mat, set(range(1, 41)))  # version 4 beats 3 and 2
    assert files["classes.csv"].decode().splitlines()[1].endswith(",unclassified")
    assert "class_scores.csv" not in contents(ns, f"2024/D20240601/{D_BIN2}")  # products are per bin


def test_blob_masks_bytes_unchanged(synth, caplog):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    pngs = write_blobs(products / f"{D_BIN}_blobs_v2.zip", D_BIN, targets)
    ns, _ = tree(root, products, blobs=True)
    masks = contents(ns, f"2024/D20240601/{D_BIN}/blobs")
    assert masks == {f"{D_BIN}_{t:05d}.png": data for t, data in pngs.items()}
    without, _ = tree(root, products)  # -o blobs not given: no blobs/
    assert "blobs" not in folder(without, f"2024/D20240601/{D_BIN}")
    assert not lines(caplog, "blobs")


def test_products_found_while_the_index_is_built_and_when_they_appear(synth):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    data = DataRoot(str(root))
    options = Options(products=(("cnn", str(products)),))
    catalog, _ = attach(data, options)
    ns = Namespace(data, options)
    crawler = Crawler(ns, catalog)
    assert "features_v2.csv" not in folder(ns, f"2024/D20240601/{D_BIN}")  # served before any product walk
    write_features(products / "2024" / f"{D_BIN}_fea_v2.csv", targets)
    os.utime(products / "2024" / f"{D_BIN}_fea_v2.csv", (1e9, 1e9))  # not live: its folder's stamp is watched
    crawler.run_pass()
    changes = ns.refresh()
    bin_ino = ns.lookup(ns.lookup(ns.lookup(ROOT_INO, "2024").ino, "D20240601").ino, D_BIN).ino
    assert ("inode", bin_ino) in changes
    assert "features_v2.csv" in folder(ns, f"2024/D20240601/{D_BIN}")
    # a product folder whose stamp has not changed is not listed again
    listed = []
    source = catalog.roots["cnn"].source
    original = source.listdir
    source.listdir = lambda folder: listed.append(folder) or original(folder)
    crawler.run_pass()
    assert listed == [] and ns.refresh() == []
    (products / "2024" / f"{D_BIN}_fea_v2.csv").unlink()
    os.utime(products / "2024", (1, 1))  # (a stamp that surely differs)
    crawler.run_pass()
    assert listed == ["2024"]
    ns.refresh()
    assert "features_v2.csv" not in folder(ns, f"2024/D20240601/{D_BIN}")


@needs_h5py
def test_index_records_hold_the_product_identity(synth, tmp_path):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    h5 = write_h5(products / f"{D_BIN}_class.h5", scores=scores_for(targets), labels=LABELS, rois=targets)
    options = Options(products=(("cnn", str(products)),))
    assert "products=cnn=" in options.signature and options.signature != Options().signature
    assert Options(products=options.products, blobs=True).signature != options.signature
    path = default_path(str(root), options.signature)
    index = Index(path, options.signature, wait=True)
    ns, _ = tree(root, products, index=index)
    first = contents(ns, f"2024/D20240601/{D_BIN}")["classes.csv"]
    index.close()
    index = Index(path, options.signature, wait=True)
    ns, _ = tree(root, products, index=index)
    assert contents(ns, f"2024/D20240601/{D_BIN}")["classes.csv"] == first and ns.parses == 0
    index.close()
    write_h5(h5, scores=scores_for(targets, seed=9), labels=LABELS, rois=targets)  # rewritten: a new identity
    index = Index(path, options.signature, wait=True)
    ns, _ = tree(root, products, index=index)
    again = contents(ns, f"2024/D20240601/{D_BIN}")["classes.csv"]
    assert again != first and ns.parses == 1
    index.close()


# --- bad input: one line per bin, the product absent, everything else exact -------------------
def _bad_products(products: Path, targets: list[int]) -> dict[str, tuple[str, str]]:
    """Each bad product case: file name -> (the log text, the file of the bin folder left out)."""
    import numpy as np
    cases = {}
    good = write_h5(products / "ok.h5", scores=scores_for(targets), labels=LABELS, rois=targets).read_bytes()
    (products / "ok.h5").unlink()
    cases["truncated"] = (good[:len(good) // 2], "not an HDF5 file, or truncated")
    cases["not-hdf5"] = (b"GIF89a" + bytes(200), "not an HDF5 file")
    write_mat(products / "other.mat", classlist=np.zeros((2, 3)))
    cases["other-layout"] = ((products / "other.mat").read_bytes(), "another layout")
    (products / "other.mat").unlink()
    write_h5(products / "cols.h5", scores=scores_for(targets), labels=LABELS[:2], rois=targets)
    cases["labels-columns"] = ((products / "cols.h5").read_bytes(), "2 class labels for 4 score columns")
    (products / "cols.h5").unlink()
    return cases


@needs_h5py
@needs_scipy
@pytest.mark.parametrize("case", ["truncated", "not-hdf5", "other-layout", "labels-columns"])
def test_a_class_file_that_cannot_be_read(synth, caplog, case):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    data, says = _bad_products(products, targets)[case]
    name = f"{D_BIN}_class_v1.mat" if case == "other-layout" else f"{D_BIN}_class.h5"
    (products / name).write_bytes(data)
    (products / f"{D_BIN}_fea_v2.csv").write_bytes(b"roi_number,Area\n1,2\n")
    ns, _ = tree(root, products)
    for _ in range(3):  # listed and read again: still one line
        files = contents(ns, f"2024/D20240601/{D_BIN}")
    assert "class_scores.csv" not in files and "classes.csv" not in files
    assert files["features_v2.csv"] == b"roi_number,Area\n1,2\n"  # the other products stay
    plain, _ = tree(root)
    bare = contents(plain, f"2024/D20240601/{D_BIN}")
    assert {k: v for k, v in files.items() if k in bare} == bare
    said = lines(caplog, says)
    assert len(said) == 1 and D_BIN in said[0], [r.getMessage() for r in caplog.records]


@needs_h5py
def test_roi_numbers_not_in_the_adc_are_left_out_with_one_line(synth, caplog):
    root, products, bins = synth
    targets = [im.target for im in bins[D_BIN].images]
    rois = targets + [500, 501]
    write_h5(products / f"{D_BIN}_class.h5", scores=scores_for(rois), labels=LABELS, rois=rois)
    ns, _ = tree(root, products)
    files = contents(ns, f"2024/D20240601/{D_BIN}")
    pids = [row.split(",")[0] for row in files["classes.csv"].decode().splitlines()[1:]]
    assert pids == [f"{D_BIN}_{t:05d}" for t in targets]
    assert len(lines(caplog, "2 roi numbers not in the ADC (500, 501)")) == 1


def test_blobs_zip_with_junk_members_and_a_bad_central_directory(synth, caplog):
    root, products, bins = synth
    t1 = [im.target for im in bins[D_BIN].images]
    pngs = write_blobs(products / f"{D_BIN}_blobs_v2.zip", D_BIN, t1, junk=True)
    t2 = [im.target for im in bins[D_BIN2].images]
    write_blobs(products / f"{D_BIN2}_blobs_v2.zip", D_BIN2, t2)
    zipped = (products / f"{D_BIN2}_blobs_v2.zip").read_bytes()
    (products / f"{D_BIN2}_blobs_v2.zip").write_bytes(zipped[:-30])  # the end of the central directory cut
    ns, _ = tree(root, products, blobs=True)
    assert contents(ns, f"2024/D20240601/{D_BIN}/blobs") == {f"{D_BIN}_{t:05d}.png": d for t, d in pngs.items()}
    assert len(lines(caplog, "2 members left out")) == 1
    assert "blobs" not in folder(ns, f"2024/D20240601/{D_BIN2}")
    assert len(lines(caplog, "bad central directory")) == 1
    plain, _ = tree(root)
    assert {k: v for k, v in contents(ns, f"2024/D20240601/{D_BIN2}").items()} == contents(plain, f"2024/D20240601/{D_BIN2}")


def test_features_with_another_roi_column_are_shown_and_said_once(synth, caplog):
    root, products, bins = synth
    data = write_features(products / f"{D_BIN}_fea_v2.csv", [1, 2], roi_column="roi")  # as syke-pic writes
    ns, _ = tree(root, products)
    for _ in range(2):
        assert contents(ns, f"2024/D20240601/{D_BIN}")["features_v2.csv"] == data
    assert len(lines(caplog, "first column is 'roi'")) == 1


@needs_h5py
def test_without_h5py_the_mount_says_once_what_to_install(synth, caplog, monkeypatch):
    root, products, bins = synth
    for b in (D_BIN, D_BIN2):
        targets = [im.target for im in bins[b].images]
        write_h5(products / f"{b}_class.h5", scores=scores_for(targets), labels=LABELS, rois=targets)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a))
    ns, _ = tree(root, products)
    for b in (D_BIN, D_BIN2):
        assert "classes.csv" not in folder(ns, f"2024/D20240601/{b}") and "hdr.json" in folder(ns, f"2024/D20240601/{b}")
    said = lines(caplog, "h5py")
    assert len(said) == 1 and "class scores .h5 files" in said[0] and "pip install 'ifcbfs[products]'" in said[0]


def test_catalog_finds_products_by_bin_in_order_of_the_roots(tmp_path):
    from ifcbfs.catalog import ProductRoot
    from ifcbfs.core.local import LocalSource
    from ifcbfs.core.products import product_kind
    from ifcbfs.core.source import SourceFile
    a, b = LocalSource(str(tmp_path / "a")), LocalSource(str(tmp_path / "b"))
    catalog = Catalog(None, [ProductRoot("b", b), ProductRoot("a", a)])
    name = f"{D_BIN}_class.h5"
    f = SourceFile("/x/" + name, 10, 5, 7)
    assert catalog.put_product_folder("a", "", 1, [], [(name, product_kind(name), f)]) == {D_BIN}
    assert catalog.put_product_folder("b", "deep/er", 1, [], [(name, product_kind(name), f)]) == {D_BIN}
    assert catalog.put_product_folder("a", "", 1, [], [(name, product_kind(name), f)]) == set()  # unchanged
    found = catalog.find([D_BIN, D_BIN2])
    assert list(found) == [D_BIN] and [p.root for p in found[D_BIN]] == ["b", "a"]
    assert catalog.drop_product_folder("b", "deep") == {D_BIN}
    assert [p.root for p in catalog.find([D_BIN])[D_BIN]] == ["a"]


def test_product_logs_name_the_bin_once(synth, caplog):
    caplog.set_level(logging.WARNING, "ifcbfs")
    root, products, _ = synth
    (products / f"{D_BIN}_blobs_v1.zip").write_bytes(b"PK not a zip")
    ns, _ = tree(root, products, blobs=True)
    for _ in range(3):
        folder(ns, f"2024/D20240601/{D_BIN}")
    said = lines(caplog, "blobs zip")
    assert len(said) == 1 and said[0].startswith(f"2024/D20240601/{D_BIN} products: ")
