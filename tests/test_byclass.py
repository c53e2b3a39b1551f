"""by-class/ and bins.csv (SPEC section 12): walked as training loaders walk class folders,
listed from the index without reading class files, growing while indexing and as class files
appear, and one log line per bad file."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import ifcbfs.logonce
from ifcbfs import indexer
from ifcbfs.core import beside
from ifcbfs.core.source import DataRoot
from ifcbfs.crawler import Crawler, attach
from ifcbfs.fs.namespace import LINK, ROOT_INO, Namespace, Options
from ifcbfs.fs.views import BINS_COLUMNS
from ifcbfs.index import Index
from ifcbfs.synth import write_bin, write_dataset
from mounting import lstat_tree, mounted
from productfiles import (bins_of, classified, counts, needs_h5py, needs_scipy, set_mtime,
                          write_manual_csv, write_manual_mat)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MTIME = 1_700_000_000
pytestmark = needs_h5py


@pytest.fixture(autouse=True)
def fresh_log():
    ifcbfs.logonce._bad_bins.clear()


def views(root, options: Options, index=None):
    data = DataRoot(str(root))
    catalog, shown = attach(data, options, index)
    ns = Namespace(data, options, index, shown)
    return ns, Crawler(ns, catalog)


def walk(ns, ino=ROOT_INO, path=""):
    """Every node below a folder: {path: node}."""
    out = {}
    for node in ns.listing(ino):
        p = f"{path}/{node.name}" if path else node.name
        out[p] = node
        if node.is_dir:
            out.update(walk(ns, node.ino, p))
    return out


def image_folder(top: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision.datasets.ImageFolder's classes and samples (find_classes and make_dataset)."""
    classes = sorted(entry.name for entry in os.scandir(top) if entry.is_dir())
    samples = []
    for index, name in enumerate(classes):
        for root, _, names in sorted(os.walk(top / name, followlinks=True)):
            for fname in sorted(names):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(root, fname), index))
    return classes, samples


def by_class_counts(ns, classifier: str) -> dict[str, int]:
    tree = walk(ns)
    out: dict[str, int] = {}
    for path, node in tree.items():
        parts = path.split("/")
        if node.kind == LINK and parts[1] == classifier:
            out[parts[2]] = out.get(parts[2], 0) + 1
    return out


@pytest.fixture
def archive(tmp_path):
    """Eight bins (D, and I with stitched pairs), a classifier `cnn` for all of them, and a tree
    `annotations` of manual files."""
    root = tmp_path / "data"
    write_dataset(root, n_bins=8, n_triggers=50, seed=11, style="mixed", pair_fraction=0.3)
    bins = bins_of(root)
    cnn = tmp_path / "cnn"
    assigned = classified(root, cnn, bins)
    return root, cnn, tmp_path / "annotations", bins, assigned


# --- the view through the namespace -----------------------------------------------------------
def test_counts_per_class_equal_the_class_files(archive):
    root, cnn, _, bins, assigned = archive
    ns, crawler = views(root, Options(products=(("cnn", str(cnn)),), classes=True))
    assert [n.name for n in ns.listing(ROOT_INO) if n.view] == ["by-class"]
    crawler.run_pass()
    ns.refresh()
    assert by_class_counts(ns, "cnn") == counts(assigned)
    tree = walk(ns)
    links = {p: n for p, n in tree.items() if n.kind == LINK}
    assert len(links) == sum(len(v) for v in assigned.values())
    for path, node in links.items():
        _, classifier, label, year, name = path.split("/")
        bin_id, target = name[:-4].rsplit("_", 1)
        assert assigned[bin_id][int(target)] == label and year == "2024"
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), node.target))
        assert resolved in tree and not tree[resolved].is_dir  # every link leads to an image
    stitched = [b for b in bins.values() if b.pairs]
    assert stitched, "the archive has stitched pairs"
    seconds = {f"{b.files.bin_id}_{p[1]:05d}.png" for b in stitched for p in b.pairs}
    assert not seconds & {p.rsplit("/", 1)[1] for p in links}  # a pair's second ROI has no image


def test_listing_a_class_folder_reads_no_class_file_once_indexed(tmp_path, capsys):
    root = tmp_path / "data"
    write_dataset(root, n_bins=60, n_triggers=12, seed=2, style="D", layout="flat")
    bins = bins_of(root)
    cnn = tmp_path / "cnn"
    assigned = classified(root, cnn, bins)
    options = Options(products=(("cnn", str(cnn)),), classes=True, bins_csv=True)
    path = str(tmp_path / "index.sqlite")
    code = indexer.main([str(root), "-o", f"products=cnn={cnn},classes,bins_csv,index={path}"])
    assert code == 0
    said = capsys.readouterr().err
    assert "indexed 60 product files in 2 folders" in said and "indexed 60 bins for the views (60 with class labels)" in said
    before = beside.reads
    index = Index(path, options.signature)
    ns, crawler = views(root, options, index)  # a new mount: no pass has run yet
    assert by_class_counts(ns, "cnn") == counts(assigned)
    assert crawler.status() == "60 product files, 60 bins in the views, indexing (0 folders, 0 bins so far)"
    crawler.run_pass()  # the first pass of a mount checks every bin: none needs its class file again
    ns.refresh()
    assert crawler.status() == "60 product files, 60 bins in the views"
    assert by_class_counts(ns, "cnn") == counts(assigned)
    assert beside.reads == before and ns.parses == 0
    index.close()


def test_the_view_grows_while_indexing(archive):
    root, cnn, _, bins, assigned = archive
    ns, crawler = views(root, Options(products=(("cnn", str(cnn)),), classes=True, bins_csv=True))
    seen = []

    def progress(text):
        if text.startswith("bins:"):
            ns.refresh()
            seen.append((sum(by_class_counts(ns, "cnn").values()), "bins.csv" in ns.children(ROOT_INO)))

    crawler.run_pass(progress)
    ns.refresh()
    total = sum(len(v) for v in assigned.values())
    grew = [n for n, _ in seen]
    assert grew == sorted(grew) and any(0 < n < total for n in grew) and grew[-1] == total
    assert not any(shown for _, shown in seen)  # bins.csv waits for the whole tree
    assert "bins.csv" in ns.children(ROOT_INO)


def test_a_new_class_file_joins_at_the_next_pass(archive):
    root, cnn, _, bins, assigned = archive
    late = sorted(assigned)[0]
    (cnn / late[:9] / f"{late}_class.h5").unlink()
    ns, crawler = views(root, Options(products=(("cnn", str(cnn)),), classes=True))
    crawler.run_pass()
    ns.refresh()
    walk(ns)  # the kernel has listed every folder
    assert sum(by_class_counts(ns, "cnn").values()) == sum(len(v) for b, v in assigned.items() if b != late)
    classified(root, cnn, {late: bins[late]}, seed=sorted(assigned).index(late))
    crawler.run_pass()
    changes = ns.refresh()
    assert any(c[0] == "inode" for c in changes)
    assert by_class_counts(ns, "cnn") == counts(assigned)


def test_bins_csv(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, n_bins=3, n_triggers=30, seed=4, style="mixed")
    hdr = root / "2024" / "D20240601" / "D20240601T000000_IFCB124.hdr"
    hdr.write_bytes(hdr.read_bytes() + b"gpsLatitude: 41.5\ngpsLongitude: -70.6667\n")
    ns, crawler = views(root, Options(bins_csv=True))
    assert "bins.csv" not in ns.children(ROOT_INO)  # not before the whole tree is indexed
    crawler.run_pass()
    assert any(c == ("inode", ROOT_INO) for c in ns.refresh())
    node = ns.lookup(ROOT_INO, "bins.csv")
    data = ns.content(node)
    assert node.size == len(data) and node.entry.grows
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert list(rows[0]) == list(BINS_COLUMNS)
    assert [r["pid"] for r in rows] == ["D20240601T000000_IFCB124", "D20240601T004000_IFCB124", "IFCB5_2024_153_002000"]
    for row in rows:
        model = bins_of(root)[row["pid"]]
        doc = __import__("json").loads(model.hdr_json)
        assert float(row["ml_analyzed"]) == doc["ml_analyzed"] and int(row["n_images"]) == doc["n_images"]
        assert row["sample_time"] == doc["timestamp"] and int(row["instrument"]) == doc["instrument"]
        assert ns.lookup(ROOT_INO, row["path"].split("/")[0]) is not None
    assert (rows[0]["latitude"], rows[0]["longitude"], rows[0]["depth"]) == ("41.5", "-70.6667", "")
    assert rows[1]["latitude"] == ""
    write_bin(root / "2024" / "D20240601", "D20240601T010000_IFCB124", 20, seed=1)
    crawler.run_pass()
    changes = ns.refresh()
    assert ("inode", node.ino) in changes
    assert node.size == len(ns.content(node)) and ns.content(node).count(b"\n") == 5


def test_a_source_folder_named_like_a_view_is_shown_and_said_once(tmp_path, caplog):
    root = tmp_path / "data"
    write_dataset(root / "by-class", n_bins=1, n_triggers=10, seed=1, layout="flat")
    ns, crawler = views(root, Options(classes=True))
    crawler.run_pass()
    for _ in range(2):
        ns.refresh()
        children = ns.children(ROOT_INO)
    assert children["by-class"].view is None and "D20240601T000000_IFCB124" in ns.children(children["by-class"].ino)
    said = [r.getMessage() for r in caplog.records if "view is not" in r.getMessage()]
    assert len(said) == 1


# --- bad input: one line per file, the image absent ---------------------------------------------
@needs_scipy
def test_manual_annotations_and_bad_input(archive, caplog):
    root, cnn, annotations, bins, _ = archive
    d_bins = sorted(b for b in bins if b.startswith("D"))
    first, second = d_bins[0], d_bins[1]
    t1 = [im.target for im in bins[first].images]
    t2 = [im.target for im in bins[second].images]
    names = ["Ciliate", "a/b", ".."]
    write_manual_mat(annotations / f"{first}.mat", {t: 1 + i % 3 for i, t in enumerate(t1)}, names)
    labels2 = {t: "x\x00y" if i % 2 else "Diatom_001" for i, t in enumerate(t2)}
    write_manual_csv(annotations / "csv" / f"{second}.csv", second, {**labels2, 999: "Diatom"})
    write_manual_csv(annotations / "D20240602T000000_IFCB124.csv", "D20240602T000000_IFCB124", {1: "Lost"})
    ns, crawler = views(root, Options(products=(("cnn", str(cnn)), ("annotations", str(annotations))), classes=True))
    crawler.run_pass()
    ns.refresh()
    expected: dict[str, int] = {}
    for i, _ in enumerate(t1):
        name = ["Ciliate", "a%2Fb", "%2E."][i % 3]
        expected[name] = expected.get(name, 0) + 1
    for i, _ in enumerate(t2):
        name = "x%00y" if i % 2 else "Diatom"  # the _001 suffix taken off, as ClassiPyR does
        expected[name] = expected.get(name, 0) + 1
    assert by_class_counts(ns, "manual") == expected
    log = [r.getMessage() for r in caplog.records]
    assert sum("labels that cannot be folder names" in m and f"{first}.mat" in m for m in log) == 1
    assert sum("labels that cannot be folder names" in m and f"{second}.csv" in m for m in log) == 1
    assert sum("1 roi numbers not in the ADC (999)" in m and f"{second}.csv" in m for m in log) == 1
    assert sum("no bin D20240602T000000_IFCB124 in the source" in m for m in log) == 1
    assert "annotations" not in {n.name for n in ns.listing(ns.lookup(ROOT_INO, "by-class").ino)}


@needs_scipy
def test_a_class_file_that_cannot_be_read_leaves_its_images_out(archive, caplog):
    root, cnn, _, bins, assigned = archive
    bad = sorted(assigned)[2]
    path = cnn / bad[:9] / f"{bad}_class.h5"
    path.write_bytes(path.read_bytes()[:300])
    ns, crawler = views(root, Options(products=(("cnn", str(cnn)),), classes=True))
    crawler.run_pass()
    crawler.run_pass()
    ns.refresh()
    assert by_class_counts(ns, "cnn") == counts({b: v for b, v in assigned.items() if b != bad})
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(said) == 1 and "truncated" in said[0]


def test_a_class_file_that_cannot_be_read_now_is_tried_again_not_remembered(archive, tmp_path, monkeypatch, caplog):
    import ifcbfs.crawler
    import ifcbfs.fs.refresh
    from ifcbfs.core.errors import ProductUnavailable

    root, cnn, _, bins, assigned = archive
    bad = sorted(assigned)[3]
    failing = {True}  # while set, the bad bin's class file comes short, as in a store's outage
    scores = beside._scores

    tries = []

    def flaky(p):
        if failing and bad in p.file.path:
            tries.append(p.file.path)
            raise ProductUnavailable(f"{p.file.path}: 300 bytes read of {p.file.size}")
        return scores(p)

    monkeypatch.setattr(beside, "_scores", flaky)
    for top in (root, cnn):
        set_mtime(top, time.time() - 7200)  # no folder is live: only the retry lists it again
    options = Options(products=(("cnn", str(cnn)),), classes=True)
    index = Index(str(tmp_path / "index.sqlite"), options.signature)
    ns, crawler = views(root, options, index)
    crawler.run_pass()
    ns.refresh()
    without = counts({b: v for b, v in assigned.items() if b != bad})
    assert by_class_counts(ns, "cnn") == without
    folder = next(n for n in walk(ns).values() if n.name == bad)
    assert "classes.csv" not in {n.name for n in ns.listing(folder.ino)}
    index.flush()
    assert index.get(folder.path, folder.files) is None  # not remembered as what the file holds
    assert any("left out for now" in r.getMessage() for r in caplog.records)

    kept, before = folder.model, len(tries)
    changes = ns.refresh(everything=True)  # SIGHUP: tried again at once, and still short
    assert len(tries) == before + 1
    assert folder.model is kept and ("inode", folder.ino) not in changes  # nothing listed changes

    failing.clear()  # the reader is well again
    crawler.run_pass()
    ns.refresh()
    assert by_class_counts(ns, "cnn") == without  # not before a minute has passed
    assert "classes.csv" not in {n.name for n in ns.listing(folder.ino)}
    for module in (ifcbfs.crawler, ifcbfs.fs.refresh):
        monkeypatch.setattr(module, "RETRY_SECONDS", 0)
    crawler.run_pass()
    changes = ns.refresh()
    assert by_class_counts(ns, "cnn") == counts(assigned)
    assert "classes.csv" in {n.name for n in ns.listing(folder.ino)} and ("inode", folder.ino) in changes
    index.flush()
    kept = index.get(folder.path, folder.files)  # read well now, and remembered
    assert kept is not None and b"classes.csv" in kept.listing().name_list()
    again, _ = views(root, options, index)  # the next mount shows it
    assert "classes.csv" in {n.name for n in again.listing(next(n for n in walk(again).values() if n.name == bad).ino)}


# --- real mounts -------------------------------------------------------------------------------
@pytest.mark.mount
@needs_scipy
def test_train_on_the_mount_like_imagefolder(archive, tmp_path):
    root, cnn, annotations, bins, assigned = archive
    first = sorted(b for b in bins if b.startswith("D"))[0]
    write_manual_csv(annotations / f"{first}.csv", first, {im.target: "Ciliate" for im in bins[first].images})
    pixels = {f"{b}_{im.target:05d}.png": (im.width, im.height, m.pixels(im)) for b, m in bins.items() for im in m.images}
    with mounted(root, tmp_path / "mnt", f"products=cnn={cnn}:{annotations}", "classes", "bins_csv", "poll=0.2") as m:
        deadline = time.monotonic() + 30
        while not (m.path / "bins.csv").exists():  # the first pass has covered the tree
            assert time.monotonic() < deadline, m.logged()
            time.sleep(0.1)
        classes, samples = image_folder(m.path / "by-class" / "cnn")
        assert classes == sorted(counts(assigned))
        found: dict[str, int] = {}
        for path, index in samples:
            with open(path, "rb") as f:
                image = Image.open(f)
                image.load()
            width, height, raw = pixels[os.path.basename(path)]
            assert image.size == (width, height) and image.tobytes() == raw
            assert image.convert("RGB").size == (width, height)
            assert os.readlink(path).startswith("../../../../")
            found[classes[index]] = found.get(classes[index], 0) + 1
        assert found == counts(assigned)
        _, manual = image_folder(m.path / "by-class" / "manual")
        assert len(manual) == len(bins[first].images)
        rows = list(csv.DictReader(open(m.path / "bins.csv")))
        assert sorted(r["pid"] for r in rows) == sorted(bins)
        assert all((m.path / r["path"] / "hdr.json").is_file() for r in rows)
        # a bin classified later joins within a few polls
        late = sorted(b for b in bins if b.startswith("IFCB"))[0]
        (cnn / late[:9] / f"{late}_class.h5").unlink()
        deadline = time.monotonic() + 20
        while any(late in p for p, _ in image_folder(m.path / "by-class" / "cnn")[1]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        start = time.monotonic()
        classified(root, cnn, {late: bins[late]}, seed=sorted(assigned).index(late))
        while sum(late in p for p, _ in image_folder(m.path / "by-class" / "cnn")[1]) != len(assigned[late]):
            assert time.monotonic() - start < 20, m.logged()
            time.sleep(0.05)
        assert "Traceback" not in m.logged()


@pytest.mark.mount
@needs_scipy
def test_export_with_products_and_views_equals_rsync_of_the_mount(ifcb_data, archive, tmp_path):
    root, cnn, annotations, bins, _ = archive
    shutil.copytree(ifcb_data / "bins" / "D20220522T003051_IFCB134", root / "real" / "D20220522T003051_IFCB134")
    shutil.copytree(ifcb_data / "products", cnn / "real")
    first = sorted(b for b in bins if b.startswith("D"))[0]
    write_manual_csv(annotations / f"{first}.csv", first, {im.target: "Ciliate" for im in bins[first].images})
    from productfiles import write_blobs
    write_blobs(cnn / f"{first}_blobs_v2.zip", first, [im.target for im in bins[first].images])
    for tree in (root, cnn, annotations):
        set_mtime(tree, MTIME)
    options = [f"products=cnn={cnn}:{annotations}", "blobs", "classes", "bins_csv"]
    with mounted(root, tmp_path / "mnt", *options, "poll=0.2") as m:
        deadline = time.monotonic() + 30
        while not (m.path / "bins.csv").exists():
            assert time.monotonic() < deadline, m.logged()
            time.sleep(0.1)
        subprocess.run(["rsync", "-a", f"{m.path}/", f"{tmp_path / 'rsync'}/"], check=True)
    code = subprocess.run([sys.executable, "-m", "ifcbfs.export", str(root), str(tmp_path / "export"), "--jobs", "2",
                           "--products", f"cnn={cnn}:{annotations}", "--blobs", "--classes", "--bins-csv"],
                          capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    left, right = comparable(tmp_path / "rsync"), comparable(tmp_path / "export")
    assert left == right
    assert any(p.endswith("/features_v2.csv") for p in left) and any(p.startswith("by-class/manual/") for p in left)
    assert any("/blobs/" in p for p in left) and "bins.csv" in left


def comparable(top: Path) -> dict:
    """Every entry under top: (mode, size of files, mtime, link target, sha of files)."""
    return {p: (oct(st.st_mode), st.st_size if digest else 0, st.st_mtime_ns, link, digest)
            for p, (st, link, digest) in lstat_tree(top).items()}
