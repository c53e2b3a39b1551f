"""Mosaic pages and the dashboard zip in the tree (SPEC sections 10 and 11): exact sizes when
listed, bytes by range, the same on every remount, and what real tools read from a mount."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import time
import zipfile

import pytest
from PIL import Image

from ifcbfs.core import bin as bin_mod
from ifcbfs.core.mosaic import BACKGROUND, Mosaic
from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import BIN, FILE, ROOT_INO, Namespace, Options
from ifcbfs.index import Index
from ifcbfs.synth import write_bin, write_dataset
from mounting import decodes, mounted

SHAPE = Mosaic(300, 200, 50)  # small pages, so a bin has several
VIEWS = Options(mosaic=SHAPE, zip=True)
MTIME = 1_700_000_000
EMPTY = "D20240602T000000_IFCB124"  # a bin whose triggers have no image
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("views") / "data"
    write_dataset(root, n_bins=4, n_triggers=120, seed=4, style="mixed", pair_fraction=0.3, mtime=MTIME)
    write_bin(root / "empty", EMPTY, 30, seed=1, image_fraction=0.0, mtime=MTIME)
    for folder in (root / "empty", root):
        os.utime(folder, (MTIME, MTIME))
    return root


def walk(ns, ino=ROOT_INO):
    for node in ns.listing(ino):
        yield node
        if node.is_dir:
            yield from walk(ns, node.ino)


def bins(ns) -> list:
    return [n for n in walk(ns) if n.kind == BIN]


def files(ns, b) -> dict:
    """The files of a bin folder by their path inside it (`mosaic/page-001.png`)."""
    return {n.path[len(b.path) + 1:]: n for n in walk(ns, b.ino) if n.kind == FILE}


def rows(coordinates: bytes) -> list[tuple[int, ...]]:
    lines = coordinates.decode().splitlines()
    assert lines[0] == "page,x,y,width,height,target"
    return [tuple(map(int, line.split(","))) for line in lines[1:]]


def pngs(names) -> list[str]:
    """The bin folder's own images, in name (= target) order."""
    return sorted(n for n in names if n.endswith(".png") and "/" not in n)


# --- listing ---------------------------------------------------------------------------------
def test_listing_reads_no_pixel_and_every_size_is_its_bytes(synth, monkeypatch):
    reads = []
    real = bin_mod.read_pixels
    monkeypatch.setattr(bin_mod, "read_pixels", lambda *args: reads.append(args[2]) or real(*args))
    ns = Namespace(DataRoot(str(synth)), VIEWS)
    listed = {b.name: files(ns, b) for b in bins(ns)}
    assert reads == [] and ns.decodes == 0
    assert len(listed) == 5
    total = 0
    for name, names in listed.items():
        pages = sorted(n for n in names if n.startswith("mosaic/page-"))
        coordinates = ns.read(names["mosaic/coordinates.csv"].ino)
        count = max((r[0] for r in rows(coordinates)), default=0)
        assert pages == [f"mosaic/page-{i:03d}.png" for i in range(1, count + 1)]
        assert f"{name}.zip" in names and (count > 0 or name == EMPTY)
        total += count
        sizes = {n.size for p, n in names.items() if p.startswith("mosaic/page-")}
        assert sizes <= {63 + 200 * 301 + 5}  # every page is 300 x 200
    assert total > 5
    assert reads == []  # coordinates.csv is made at listing, from sizes
    for names in listed.values():
        for node in names.values():
            assert len(ns.read(node.ino)) == node.size, node.path
    assert reads and ns.decodes > 0


def test_a_bin_without_images(synth):
    ns = Namespace(DataRoot(str(synth)), VIEWS)
    b = ns.lookup(ns.lookup(ROOT_INO, "empty").ino, EMPTY)
    names = files(ns, b)
    assert sorted(n for n in names if n.startswith("mosaic/")) == ["mosaic/coordinates.csv"]
    assert ns.read(names["mosaic/coordinates.csv"].ino) == b"page,x,y,width,height,target\n"
    zf = zipfile.ZipFile(io.BytesIO(ns.read(names[f"{EMPTY}.zip"].ino)))
    assert zf.namelist() == ["metadata.json", f"{EMPTY}_headers.json", f"{EMPTY}.csv"]
    assert len(zf.read(f"{EMPTY}.csv").splitlines()) == 30 and zf.testzip() is None


# --- the zip ---------------------------------------------------------------------------------
def check_zip(ns, b) -> None:
    """The zip holds the bin folder's files as the dashboard lays them out."""
    names = files(ns, b)
    zf = zipfile.ZipFile(io.BytesIO(ns.read(names[f"{b.name}.zip"].ino)))
    assert zf.testzip() is None
    images = pngs(names)
    assert zf.namelist() == ["metadata.json", f"{b.name}_headers.json", f"{b.name}.csv"] + images
    hdr = json.loads(ns.read(names["hdr.json"].ino))
    assert json.loads(zf.read("metadata.json")) == {
        "lid": b.name, "schema": 2 if b.name.startswith("D") else 1, "timestamp": hdr["timestamp"]}
    assert json.loads(zf.read(f"{b.name}_headers.json")) == hdr["header"]
    adc = ns.read(names["adc.csv"].ino).decode().splitlines()[1:]
    assert zf.read(f"{b.name}.csv").decode().splitlines() == [row.split(",", 1)[1] for row in adc]
    for image in images:
        assert zf.read(image) == ns.read(names[image].ino)
    assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    when = time.gmtime(b.mtime_ns // 10**9)  # the bin's mtime, UTC, in DOS's 2-second steps
    assert {i.date_time for i in zf.infolist()} == {(*when[:5], when[5] // 2 * 2)}


def test_the_zip_holds_the_bin_folder(synth):
    ns = Namespace(DataRoot(str(synth)), VIEWS)
    for b in bins(ns):
        check_zip(ns, b)


def test_the_zip_of_real_bins(ifcb_data):
    ns = Namespace(DataRoot(str(ifcb_data / "bins")), Options(zip=True, stitch="qc"))
    for b in bins(ns):
        check_zip(ns, b)


def test_ranges_are_slices_of_the_whole_and_make_only_what_they_overlap(synth, monkeypatch):
    ns = Namespace(DataRoot(str(synth)), VIEWS)
    b = max(bins(ns), key=lambda b: len(files(ns, b)))
    node = files(ns, b)[f"{b.name}.zip"]
    whole = ns.read(node.ino)
    made = []
    real = bin_mod.read_pixels
    monkeypatch.setattr(bin_mod, "read_pixels", lambda *args: made.append(args[2]) or real(*args))
    fresh = Namespace(DataRoot(str(synth)), VIEWS)
    b = next(c for c in bins(fresh) if c.name == b.name)
    node = files(fresh, b)[f"{b.name}.zip"]
    middle = node.size // 2 + 7
    assert fresh.read_range(node, middle, 3001) == whole[middle:middle + 3001]
    assert 1 <= len(made) <= 2  # one image, or two where the range crosses a member
    cd = zipfile.ZipFile(io.BytesIO(whole)).start_dir
    first, made[:] = set(made), []
    assert fresh.read_range(node, cd - 5, 1 << 30) == whole[cd - 5:]  # every other CRC, made once
    assert len(made) == len(set(made)) and not first & set(made)
    assert len(made) + len(first) >= len(pngs(files(fresh, b)))
    made.clear()
    infos = zipfile.ZipFile(io.BytesIO(whole)).infolist()
    edges = {0, 1, cd, cd + 1, node.size - 22, node.size - 1, node.size}
    edges |= {i.header_offset + d for i in infos for d in (-1, 0, 1, 31)}
    for offset in sorted(e for e in edges if e >= 0):
        for length in (1, 29, 4097, 131072):
            assert fresh.read_range(node, offset, length) == whole[offset:offset + length]
    assert fresh.read_range(node, node.size + 10, 100) == b""
    made.clear()
    assert fresh.read_range(node, cd, node.size) == whole[cd:] and made == []  # the CRCs are kept
    assert whole == b"".join(fresh.pieces(node, 65537)) and fresh.cache.used < len(whole)


# --- the mosaic ------------------------------------------------------------------------------
def check_mosaic(ns, b, shape: Mosaic) -> int:
    """Pages decode with Pillow, each tile is its image scaled as coordinates.csv says, the rest
    is background, and every image is on exactly one page. Returns the number of pages."""
    names = files(ns, b)
    placed = rows(ns.read(names["mosaic/coordinates.csv"].ino))
    images = {int(n[-9:-4]): n for n in pngs(names)}
    assert sorted(r[5] for r in placed) == sorted(images)
    pages = sorted(n for n in names if n.startswith("mosaic/page-"))
    for number, name in enumerate(pages, 1):
        page = Image.open(io.BytesIO(ns.read(names[name].ino)))
        page.load()
        assert (page.mode, page.size) == ("L", (shape.width, shape.height))
        covered = Image.new("1", page.size, 0)
        for _, x, y, w, h, target in (r for r in placed if r[0] == number):
            image = Image.open(io.BytesIO(ns.read(names[images[target]].ino)))
            want = image if image.size == (w, h) else image.resize((w, h), BILINEAR)
            assert page.crop((x, y, x + w, y + h)).tobytes() == want.tobytes(), (name, target)
            assert w == max(image.width * shape.scale // 100, 1) or w == shape.width or h == shape.height
            covered.paste(1, (x, y, x + w, y + h))
        background = Image.composite(Image.new("L", page.size, BACKGROUND), page, covered)
        assert background.tobytes() == bytes([BACKGROUND]) * (shape.width * shape.height)
    return len(pages)


def test_mosaic_pages_are_the_images_scaled_where_coordinates_say(synth):
    ns = Namespace(DataRoot(str(synth)), VIEWS)
    assert sum(check_mosaic(ns, b, SHAPE) for b in bins(ns)) > 5


def test_mosaic_pages_of_real_bins(ifcb_data):
    ns = Namespace(DataRoot(str(ifcb_data / "bins")), Options(mosaic=Mosaic()))
    assert sum(check_mosaic(ns, b, Mosaic()) for b in bins(ns)) >= 7


# --- stable ----------------------------------------------------------------------------------
def views_of(ns) -> dict:
    """Every mosaic and zip file: (inode, size, sha256)."""
    return {n.path: (n.ino, n.size, hashlib.sha256(ns.read(n.ino)).hexdigest())
            for n in walk(ns) if n.kind == FILE and ("/mosaic/" in n.path or n.name.endswith(".zip"))}


def test_the_same_bytes_and_inodes_from_a_fresh_tree_and_from_the_index(synth, tmp_path):
    first = views_of(Namespace(DataRoot(str(synth)), VIEWS))
    assert len(first) == 5 + 5 + 7  # each bin its zip and coordinates.csv, and 7 pages
    index = Index(str(tmp_path / "index.sqlite"), VIEWS.signature)
    views_of(Namespace(DataRoot(str(synth)), VIEWS, index))
    index.close()
    index = Index(str(tmp_path / "index.sqlite"), VIEWS.signature)
    warm = Namespace(DataRoot(str(synth)), VIEWS, index)
    assert views_of(warm) == first and warm.parses == 0 and index.hits == 5
    assert Options(mosaic=Mosaic(), zip=True).signature == "layout=mirror,stitch=on,mosaic=800x600@33,zip"
    assert len({VIEWS.signature, Options().signature, Options(zip=True).signature}) == 3


def test_a_growing_bin_changes_its_views_and_an_open_version_stays_whole(tmp_path):
    stem = "D20240601T000000_IFCB124"
    write_bin(tmp_path / "full", stem, 160, seed=5, image_fraction=0.8)
    live = tmp_path / "live"
    live.mkdir()
    adc = (tmp_path / "full" / f"{stem}.adc").read_bytes().splitlines(keepends=True)
    shutil.copy(tmp_path / "full" / f"{stem}.hdr", live)
    shutil.copy(tmp_path / "full" / f"{stem}.roi", live)
    (live / f"{stem}.adc").write_bytes(b"".join(adc[:60]))
    ns = Namespace(DataRoot(str(live)), VIEWS)
    b = ns.lookup(ROOT_INO, stem)
    old = files(ns, b)
    assert all(n.entry.grows for p, n in old.items() if p.startswith("mosaic/") or p.endswith(".zip"))
    before = {p: ns.read(n.ino) for p, n in old.items()}
    ns.drop_caches()
    with open(live / f"{stem}.adc", "ab") as fh:
        fh.write(b"".join(adc[60:]))
    os.utime(live / f"{stem}.adc", ns=(1, 10**18))
    ns.refresh()
    new = files(ns, b)
    assert new[f"{stem}.zip"].size > old[f"{stem}.zip"].size
    assert len(rows(ns.read(new["mosaic/coordinates.csv"].ino))) > len(rows(before["mosaic/coordinates.csv"]))
    assert zipfile.ZipFile(io.BytesIO(ns.read(new[f"{stem}.zip"].ino))).testzip() is None
    for path, node in old.items():  # a handle opened before still reads its own version, whole
        assert ns.read_range(node, 0, node.size + 1) == before[path]


# --- a real mount and real tools -------------------------------------------------------------
def sha(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def dd(path, offset: int, count: int) -> bytes:
    done = subprocess.run(["dd", f"if={path}", "iflag=skip_bytes,count_bytes", f"skip={offset}",
                           f"count={count}", "bs=65536", "status=none"], capture_output=True, check=True)
    return done.stdout


@pytest.mark.mount
def test_real_tools_read_the_views_from_a_mount(ifcb_data, tmp_path):
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed (apt-get install unzip)")
    source = ifcb_data / "bins"
    ns = Namespace(DataRoot(str(source)), Options(mosaic=Mosaic(), zip=True))
    expected = views_of(ns)
    seen = []
    for attempt in range(2):  # a remount serves the same inodes and bytes
        with mounted(source, tmp_path / "mnt", "mosaic", "zip") as m:
            listing = subprocess.run(["ls", "-lR", str(m.path)], capture_output=True, text=True, check=True).stdout
            assert ".zip" in listing and "page-001.png" in listing and decodes(m.path) == 0
            got = {}
            for path in expected:
                st = os.stat(m.path / path)
                got[path] = (st.st_ino, st.st_size, sha(m.path / path))
            assert got == expected
            seen.append(got)
            for zipped in sorted(m.path / p for p in expected if p.endswith(".zip")):
                folder = zipped.parent
                done = subprocess.run(["unzip", "-t", str(zipped)], capture_output=True, text=True)
                assert done.returncode == 0 and "No errors detected" in done.stdout, done.stdout
                with zipfile.ZipFile(zipped) as zf:
                    for name in zf.namelist()[3:]:
                        assert zf.read(name) == (folder / name).read_bytes()
                whole = zipped.read_bytes()
                for offset, count in ((1, 1), (333, 70001), (len(whole) // 3, 131073), (len(whole) - 17, 100)):
                    assert dd(zipped, offset, count) == whole[offset:offset + count]
                for page in (folder / "mosaic").glob("page-*.png"):
                    with Image.open(page) as im:
                        assert (im.mode, im.size) == ("L", (800, 600))
    assert seen[0] == seen[1]
