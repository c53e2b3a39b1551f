"""`stitch=on|off|qc`: unstitched ROIs, and each stitch's raw composite and gap mask (SPEC 5, 7)."""
import csv
import io
import json
import os

import pytest
from hypothesis import given, settings
from PIL import Image as PILImage

from ifcbfs.core.bin import Bin
from ifcbfs.core.records import QC_FOLDER
from ifcbfs.core.png import png_size
from ifcbfs.core.source import DataRoot
from ifcbfs.core.stitch import composite, stitch
from ifcbfs.fs.namespace import BIN, FILE, ROOT_INO, SUB, Namespace, Options
from ifcbfs.synth import write_bin as synth_bin
from mounting import decodes, mounted
from test_stitch import configurations, reference, roi, write_bin

I_ID = "IFCB5_2012_028_081515"
D_ID = "D20130526T095207_IFCB013"

HAND_MADE = {  # I-style ROIs, and which targets stitching merges into which image
    "chain": ([roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10), roi(3, 10, 10, 10, 10), roi(4, 0, 0, 6, 6, trigger=2)],
              {1: [1, 2]}),
    "no gap": ([roi(1, 0, 0, 10, 10), roi(2, 5, 0, 10, 10), roi(3, 3, 3, 4, 4, trigger=2),
                roi(4, 2, 2, 5, 5, trigger=2)], {1: [1, 2], 3: [3, 4]}),
    "gaps at the edges": ([roi(1, 0, 0, 4, 4), roi(2, 1, 1, 4, 4), roi(3, 30, 0, 9, 5, trigger=2),
                           roi(4, 22, 1, 12, 9, trigger=2)], {1: [1, 2], 3: [3, 4]}),
}


def decode(png: bytes) -> tuple[tuple[int, int], bytes]:
    with PILImage.open(io.BytesIO(png)) as im:
        assert im.mode == "L"
        return im.size, im.tobytes()


def plain_rois(folder, bin_id: str) -> dict[int, tuple[int, int, bytes]]:
    """Every image line's (width, height, bytes at its start byte), read without the core."""
    data = (folder / f"{bin_id}.roi").read_bytes()
    out = {}
    for n, row in enumerate(csv.reader((folder / f"{bin_id}.adc").read_text().splitlines()), 1):
        w, h, start = int(row[11]), int(row[12]), int(row[13])
        if w and h:
            out[n] = (w, h, data[start:start + w * h])
    return out


def check_qc(b: Bin) -> int:
    """Every stitched image of a qc bin against its raw composite and gap: returns how many."""
    stem = str(b.files.bin_id)
    stitched = [im for im in b.images if len(im.parts) == 2]
    qc = sorted(e.name for e in b.entries if "/" in e.name)
    assert qc == sorted(f"{QC_FOLDER}/{stem}_{im.target:05d}_{v}.png" for im in stitched for v in ("raw", "gap"))
    for im in stitched:
        size, pixels = decode(b.read(f"{stem}_{im.target:05d}.png"))
        views = {}
        for view in ("raw", "gap"):
            name = f"{QC_FOLDER}/{stem}_{im.target:05d}_{view}.png"
            data = b.read(name)
            assert len(data) == b.by_name[name].size == png_size(im.width, im.height)
            got_size, views[view] = decode(data)
            assert got_size == size == (im.width, im.height)
        raw, gap = views["raw"], views["gap"]
        a, c = im.parts
        with open(b.files.roi.path, "rb") as f:
            data = f.read()
        pa, pc = (data[r.start:r.start + r.width * r.height] for r in im.parts)
        assert pixels == reference(a, pa, c, pc)[2]  # the stitch, its infill value included, is SPEC's
        x0, y0 = min(a.x, c.x), min(a.y, c.y)
        inside = [any(r.x <= x0 + x < r.x + r.width and r.y <= y0 + y < r.y + r.height for r in im.parts)
                  for y in range(im.height) for x in range(im.width)]
        assert list(gap) == [0 if covered else 255 for covered in inside]  # the mask is the geometry
        fill = {pixels[i] for i, v in enumerate(gap) if v}
        assert len(fill) <= 1, "one infill value for the whole gap"
        for i, v in enumerate(gap):
            assert raw[i] == (0 if v else pixels[i]), i
    return len(stitched)


# --- the core ---------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(configurations())
def test_the_composite_is_the_stitch_before_infill(config):
    a, pa, b, pb = config
    pasted = composite(a, pa, b, pb)
    w, h, expected = reference(a, pa, b, pb)
    assert (pasted.width, pasted.height) == (w, h)
    assert stitch(a, pa, b, pb) == pasted.stitched() == expected
    mask = pasted.gap_mask()
    assert set(mask) <= {0, 255}
    for i, v in enumerate(mask):
        assert pasted.raw[i] == (0 if v else expected[i])
        assert not v or expected[i] == pasted.fill


@pytest.mark.parametrize("case", HAND_MADE)
def test_hand_made_i_style_bins_in_qc(tmp_path, case):
    rois, merged = HAND_MADE[case]
    on = write_bin(tmp_path, I_ID, rois)
    qc = Bin.load(on.files, "qc")
    assert qc.images == on.images and qc.pairs == on.pairs
    stitched = [im for im in qc.images if len(im.parts) == 2]
    assert {im.target: [p.target for p in im.parts] for im in stitched} == merged
    assert check_qc(qc) == len(merged)
    for im in stitched:
        gap = qc.pixels(im, "gap")
        rows = [gap[y * im.width:(y + 1) * im.width] for y in range(im.height)]
        edges = rows[0] + rows[-1] + bytes(r[0] for r in rows) + bytes(r[-1] for r in rows)
        if case == "no gap":
            assert set(gap) == {0} and qc.pixels(im, "raw") == qc.pixels(im)
        else:  # the gap of two boxes is in corners of their union: it touches the canvas edge
            assert 255 in edges


def test_a_chain_serves_its_first_target_with_its_raw_and_gap(tmp_path):
    rois = [roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10), roi(3, 10, 10, 10, 10), roi(4, 40, 40, 6, 6, trigger=2)]
    b = Bin.load(write_bin(tmp_path, I_ID, rois).files, "qc")
    assert b.pairs == [(1, 2), (2, 3)]
    assert [e.name for e in b.entries] == [
        f"{I_ID}.hdr", f"{I_ID}_00001.png", f"{I_ID}_00004.png", "adc.csv", "hdr.json",
        f"stitching/{I_ID}_00001_gap.png", f"stitching/{I_ID}_00001_raw.png"]
    assert check_qc(b) == 1


def test_off_serves_every_roi_as_cut(tmp_path):
    rois = HAND_MADE["chain"][0] + [roi(5, 0, 0, 8, 8, trigger=3), roi(6, 3, 3, 8, 8, trigger=3)]
    on = write_bin(tmp_path, I_ID, rois)
    off = Bin.load(on.files, "off")
    assert [im.target for im in on.images] == [1, 4, 5] and len(on.pairs) == 3
    assert off.pairs == [] and [e.name for e in off.entries if "/" in e.name] == []
    plain = plain_rois(tmp_path, I_ID)
    assert [im.target for im in off.images] == sorted(plain) == [1, 2, 3, 4, 5, 6]
    for target, (w, h, pixels) in plain.items():
        assert decode(off.read(f"{I_ID}_{target:05d}.png")) == ((w, h), pixels)
    assert json.loads(off.read("hdr.json"))["n_images"] == 6
    assert json.loads(on.read("hdr.json"))["n_images"] == 3
    # the metrics count what the mode serves as particles: a stitched pair once, or every ROI
    off_doc, on_doc = json.loads(off.read("hdr.json")), json.loads(on.read("hdr.json"))
    assert (off_doc["stitched"], off_doc["n_images_adc"]) == ([], 6)
    assert (on_doc["stitched"], on_doc["n_images_adc"]) == ([[1, 2], [2, 3], [5, 6]], 3)


def test_d_style_bins_are_the_same_in_every_mode(tmp_path):
    rois = [roi(1, 0, 0, 40, 30), roi(2, 20, 10, 40, 30), roi(3, 0, 0, 8, 8, trigger=2)]
    files = write_bin(tmp_path, D_ID, rois).files
    bins = [Bin.load(files, mode) for mode in ("on", "off", "qc")]
    assert bins[0].entries == bins[1].entries == bins[2].entries
    assert all(b.pairs == [] for b in bins)
    contents = [[b.read(e.name) for e in b.entries] for b in bins]
    assert contents[0] == contents[1] == contents[2]


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Bin.load(write_bin(tmp_path, I_ID, HAND_MADE["chain"][0]).files, "maybe")


# --- the real I-style bin -----------------------------------------------------------------------
def real_bin(ifcb_data, mode: str) -> Bin:
    return Bin.load(DataRoot(str(ifcb_data / "bins" / I_ID)).scan("").bins[I_ID], mode)


def test_the_real_pair_in_qc(ifcb_data, expected):
    b = real_bin(ifcb_data, "qc")
    assert b.pairs == [(3, 4)] and check_qc(b) == 1
    im = next(im for im in b.images if len(im.parts) == 2)
    assert (im.target, im.width, im.height) == (3, 263, 86)
    assert 0 < b.pixels(im, "gap").count(255) < 263 * 86  # this pair has a gap
    assert [e.name for e in b.entries if e.image is not None and not e.view] == sorted(expected["bins"][I_ID]["images"])


def test_the_real_bin_unstitched(ifcb_data):
    b = real_bin(ifcb_data, "off")
    plain = plain_rois(ifcb_data / "bins" / I_ID, I_ID)
    assert [im.target for im in b.images] == sorted(plain) and 4 in plain and b.pairs == []
    for target, (w, h, pixels) in plain.items():
        assert decode(b.read(f"{I_ID}_{target:05d}.png")) == ((w, h), pixels)
    assert json.loads(b.read("hdr.json"))["n_images"] == len(plain)


# --- the namespace ----------------------------------------------------------------------------
@pytest.fixture
def synth_i(tmp_path):
    """An I-style bin with pairs and chains, and a D-style bin beside it."""
    info = synth_bin(tmp_path / "data", "IFCB5_2012_100_120000", 300, seed=7, image_fraction=0.7,
                     pair_fraction=0.4, chain_fraction=0.4)
    synth_bin(tmp_path / "data", "D20240601T000000_IFCB124", 40, seed=1, pair_fraction=0.5)
    assert any(b == c for (_, b), (c, _) in zip(info["pairs"], info["pairs"][1:])), "a chain"
    return tmp_path / "data", info


def test_namespace_shows_stitching_as_a_folder_of_the_bin(synth_i):
    root, info = synth_i
    ns = Namespace(DataRoot(str(root)), Options(stitch="qc"))
    stem = info["bin_id"]
    b = ns.lookup(ROOT_INO, stem)
    folder = ns.lookup(b.ino, QC_FOLDER)
    assert folder.kind == SUB and folder.is_dir and ns.mode(folder) & 0o777 == 0o755
    assert folder.ino == b.ino | Bin.folder_code(QC_FOLDER) and folder.parent is b
    assert folder.mtime_ns == b.mtime_ns
    assert not any("/" in name for name in ns.children(b.ino))
    firsts = sorted({a for a, _ in info["pairs"]} - {b for _, b in info["pairs"]})
    names = list(ns.children(folder.ino))
    assert names == sorted(f"{stem}_{t:05d}_{v}.png" for t in firsts for v in ("raw", "gap"))
    assert ns.decodes == 0
    for name in names:
        node = ns.lookup(folder.ino, name)
        assert node.kind == FILE and node.path == f"{stem}/{QC_FOLDER}/{name}"
        assert len(ns.read(node.ino)) == node.size
    assert check_qc(next(iter(ns.children(folder.ino).values())).model) == len(firsts)
    d_bin = ns.lookup(ROOT_INO, "D20240601T000000_IFCB124")
    assert all(c.kind == FILE for c in ns.children(d_bin.ino).values())


def test_a_refresh_replaces_the_stitching_folder(tmp_path):
    live = tmp_path / "live"
    first = write_bin(live, I_ID, [roi(1, 0, 0, 10, 10), roi(2, 40, 40, 5, 5, trigger=2)])
    ns = Namespace(DataRoot(str(live)), Options(stitch="qc"))
    b = ns.lookup(ROOT_INO, I_ID)
    assert QC_FOLDER not in ns.children(b.ino)
    write_bin(live, I_ID, HAND_MADE["chain"][0])
    os.utime(first.files.adc.path, ns=(1, 10**18))
    ns.refresh()
    folder = ns.lookup(b.ino, QC_FOLDER)
    assert list(ns.children(folder.ino)) == [f"{I_ID}_00001_gap.png", f"{I_ID}_00001_raw.png"]
    write_bin(live, I_ID, [roi(1, 0, 0, 10, 10), roi(2, 40, 40, 5, 5, trigger=2)], seed=2)
    os.utime(first.files.adc.path, ns=(1, 2 * 10**18))
    changes = ns.refresh()
    assert ("entry", b.ino, QC_FOLDER) in changes
    assert QC_FOLDER not in ns.children(b.ino)
    assert not any(QC_FOLDER in n.path for n in ns.nodes.values())


def test_off_in_the_namespace_serves_every_line(synth_i):
    root, info = synth_i
    ns = Namespace(DataRoot(str(root)), Options(stitch="off"))
    b = ns.lookup(ROOT_INO, info["bin_id"])
    pngs = [n for n in ns.children(b.ino) if n.endswith(".png")]
    assert len(pngs) == info["n_images"] and QC_FOLDER not in ns.children(b.ino)
    hdr = ns.lookup(b.ino, "hdr.json")
    assert json.loads(ns.read(hdr.ino))["n_images"] == len(pngs)
    assert b.kind == BIN and all(c.kind == FILE for c in ns.children(b.ino).values())


# --- a real mount -----------------------------------------------------------------------------
@pytest.mark.mount
def test_mount_qc_shows_stitching_read_with_pillow(ifcb_data, tmp_path):
    with mounted(ifcb_data, tmp_path / "mnt", "stitch=qc") as m:
        folder = m.path / "bins" / I_ID / I_ID
        qc = folder / QC_FOLDER
        assert QC_FOLDER in os.listdir(folder) and qc.is_dir()
        assert sorted(os.listdir(qc)) == [f"{I_ID}_00003_gap.png", f"{I_ID}_00003_raw.png"]
        assert all(not (p / QC_FOLDER).exists() for p in (m.path / "bins").glob("*/*") if p.name != I_ID)
        sizes = {p.name: p.stat().st_size for p in qc.iterdir()}
        assert decodes(m.path) == 0
        with PILImage.open(folder / f"{I_ID}_00003.png") as im:
            stitched = im.tobytes()
            assert im.size == (263, 86)
        views = {}
        for name, size in sizes.items():
            assert (qc / name).read_bytes().__len__() == size == png_size(263, 86)
            with PILImage.open(qc / name) as im:
                assert im.size == (263, 86) and im.mode == "L"
                views[name.rsplit("_", 1)[1]] = im.tobytes()
        gap, raw = views["gap.png"], views["raw.png"]
        assert set(gap) == {0, 255}
        assert len({stitched[i] for i, v in enumerate(gap) if v}) == 1
        assert all(raw[i] == (0 if v else stitched[i]) for i, v in enumerate(gap))
        assert json.loads((folder / "hdr.json").read_text())["n_images"] == 5


@pytest.mark.mount
def test_mount_off_serves_the_plain_rois(ifcb_data, tmp_path):
    plain = plain_rois(ifcb_data / "bins" / I_ID, I_ID)
    with mounted(ifcb_data, tmp_path / "mnt", "stitch=off") as m:
        folder = m.path / "bins" / I_ID / I_ID
        pngs = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
        assert pngs == [f"{I_ID}_{t:05d}.png" for t in sorted(plain)] and QC_FOLDER not in os.listdir(folder)
        for target, (w, h, pixels) in plain.items():
            with PILImage.open(folder / f"{I_ID}_{target:05d}.png") as im:
                assert im.size == (w, h) and im.tobytes() == pixels
        assert json.loads((folder / "hdr.json").read_text())["n_images"] == len(plain)
