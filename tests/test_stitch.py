"""Stitching of I-style ROI pairs (SPEC section 5), checked against a brute-force reference."""
import hashlib
import os
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.adc import Roi
from ifcbfs.core.bin import Bin
from ifcbfs.core.records import Image, plan_images
from ifcbfs.core import roi as roi_mod
from ifcbfs.core.local import LocalSource
from ifcbfs.core.source import SourceFile

from ifcbfs.core.source import DataRoot
from ifcbfs.core.stitch import find_pairs, is_pair, round_half_even, stitch, union_box


def read_pixels(path, start, width, height):
    """One image's bytes from the .roi file at `path`, through the local source."""
    return roi_mod.read_pixels(LocalSource(os.path.dirname(path)), SourceFile(path, 0, 0), start, width, height)


def reference(a: Roi, pa: bytes, b: Roi, pb: bytes) -> tuple[int, int, bytes]:
    """SPEC section 5 pixel by pixel: paste a, then b; fill the gap with the rounded boundary mean."""
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    w = max(a.x + a.width, b.x + b.width) - x0
    h = max(a.y + a.height, b.y + b.height) - y0
    canvas = [[0] * w for _ in range(h)]
    covered = [[False] * w for _ in range(h)]
    for roi, px in ((a, pa), (b, pb)):
        for r in range(roi.height):
            for c in range(roi.width):
                canvas[roi.y - y0 + r][roi.x - x0 + c] = px[r * roi.width + c]
                covered[roi.y - y0 + r][roi.x - x0 + c] = True
    gap = [(y, x) for y in range(h) for x in range(w) if not covered[y][x]]
    if gap:
        boundary = [canvas[y][x] for y in range(h) for x in range(w) if covered[y][x] and any(
            0 <= y + dy < h and 0 <= x + dx < w and not covered[y + dy][x + dx]
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)))]
        fill = round(Fraction(sum(boundary), len(boundary))) if boundary else 0
        for y, x in gap:
            canvas[y][x] = fill
    return w, h, bytes(v for row in canvas for v in row)


def roi(target, x, y, w, h, *, trigger=1, start=0) -> Roi:
    return Roi(target, trigger, x, y, w, h, start)


def check(a: Roi, pa: bytes, b: Roi, pb: bytes) -> bytes:
    w, h, expected = reference(a, pa, b, pb)
    assert union_box(a, b)[2:] == (w, h)
    got = stitch(a, pa, b, pb)
    assert got == expected
    return got


def grid(text: str) -> bytes:
    return bytes(int(v) for v in text.split())


# --- compositing and infill -----------------------------------------------------------------

def test_gaps_touching_the_canvas_edge():
    a, b = roi(1, 0, 0, 4, 4), roi(2, 2, 2, 4, 4)
    got = check(a, bytes([10]) * 16, b, bytes([20]) * 16)
    assert got == grid("""
        10 10 10 10 15 15
        10 10 10 10 15 15
        10 10 20 20 20 20
        10 10 20 20 20 20
        15 15 20 20 20 20
        15 15 20 20 20 20""")


def test_b_wins_where_the_boxes_overlap_and_offsets_are_relative_to_the_union():
    a, b = roi(1, 100, 50, 3, 2), roi(2, 101, 50, 3, 2)
    got = check(a, bytes([1, 2, 3, 4, 5, 6]), b, bytes([7, 8, 9, 10, 11, 12]))
    assert got == bytes([1, 7, 8, 9, 4, 10, 11, 12])  # no gap: nothing filled


@pytest.mark.parametrize("va, vb, fill", [
    (2, 3, 2),    # mean 2.5: ties to the even 2 (floor is even)
    (3, 4, 4),    # mean 3.5: ties to the even 4 (floor is odd)
    (0, 1, 0),    # 0.5 -> 0
    (1, 2, 2),    # 1.5 -> 2
    (254, 255, 254),
    (10, 13, 12),  # 11.5 -> 12
    (10, 12, 11),  # no tie
])
def test_mean_of_exactly_half_rounds_to_even(va, vb, fill):
    # the boundary is four pixels of a and four of b: the mean is (va + vb) / 2
    a, b = roi(1, 0, 0, 4, 4), roi(2, 2, 2, 4, 4)
    got = check(a, bytes([va]) * 16, b, bytes([vb]) * 16)
    assert [got[i] for i in (4, 5, 10, 11, 24, 25, 30, 31)] == [fill] * 8


def test_a_boundary_pixel_next_to_two_gap_pixels_counts_once():
    # b is one pixel wide: its pixels have gap on both sides
    a, b = roi(1, 0, 0, 5, 1), roi(2, 2, 1, 1, 2)
    got = check(a, bytes(5), b, bytes([100, 100]))
    assert got == grid("0 0 0 0 0  33 33 100 33 33  33 33 100 33 33")   # 200 / 6, not 400 / 8


def test_round_half_even_is_exact():
    assert [round_half_even(t, 2) for t in range(9)] == [0, 0, 1, 2, 2, 2, 3, 4, 4]
    for count in range(1, 40):
        for total in range(0, 255 * count + 1, max(1, count // 3)):
            assert round_half_even(total, count) == round(Fraction(total, count))
    big = 255 * 10 ** 6 + 1
    assert round_half_even(2 * big + 1, 2) == round(Fraction(2 * big + 1, 2))


def test_random_configurations_match_the_reference():
    rng = random.Random(20240531)
    for _ in range(40):
        boxes = [roi(t, rng.randrange(30), rng.randrange(30), rng.randrange(1, 40), rng.randrange(1, 40))
                 for t in (1, 2)]
        pixels = [rng.randbytes(r.width * r.height) for r in boxes]
        check(boxes[0], pixels[0], boxes[1], pixels[1])


@st.composite
def configurations(draw):
    boxes = [roi(t, draw(st.integers(0, 7)), draw(st.integers(0, 7)), draw(st.integers(1, 8)), draw(st.integers(1, 8)))
             for t in (1, 2)]
    values = draw(st.sampled_from([st.integers(0, 255), st.sampled_from([0, 1, 2, 3, 254, 255])]))
    pixels = [bytes(draw(st.lists(values, min_size=r.width * r.height, max_size=r.width * r.height)))
              for r in boxes]
    return boxes[0], pixels[0], boxes[1], pixels[1]


@settings(max_examples=400, deadline=None)
@given(configurations())
def test_stitch_is_pixel_identical_to_the_reference(config):
    check(*config)


# --- pairs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("b, paired", [
    (roi(2, 8, 0, 10, 10), False),    # overlap 2 px in x: not a pair
    (roi(2, 7, 0, 10, 10), True),     # 3 px: a pair
    (roi(2, -8, 0, 10, 10), False),   # b left of a, 2 px
    (roi(2, -7, 0, 10, 10), True),
    (roi(2, 0, 8, 10, 10), False),    # the same in y
    (roi(2, 0, 7, 10, 10), True),
    (roi(2, 0, -8, 10, 10), False),
    (roi(2, 0, -7, 10, 10), True),
    (roi(2, 7, 8, 10, 10), False),    # 3 px in x but 2 in y
    (roi(2, 8, 7, 10, 10), False),
    (roi(2, 7, 7, 10, 10), True),
    (roi(2, 3, 3, 4, 4), True),       # b inside a
    (roi(2, 20, 0, 10, 10), False),   # apart
    (roi(2, 7, 7, 10, 10, trigger=2), False),   # different triggers
    (roi(2, 0, 0, 10, 10, trigger=2), False),
])
def test_pairs_need_the_same_trigger_and_more_than_2_px_of_overlap_both_ways(b, paired):
    a = roi(1, 0, 0, 10, 10)
    assert is_pair(a, b) is paired
    assert bool(find_pairs([a, b])) is paired


def with_starts(rois: list[Roi]) -> tuple[list[Roi], int]:
    """The same ROIs laid out one after the other in a .roi file: (rois, file size)."""
    out, at = [], 0
    for r in rois:
        out.append(Roi(r.target, r.trigger, r.x, r.y, r.width, r.height, at))
        at += r.width * r.height
    return out, at


def test_a_chain_of_three_serves_only_the_first_as_the_stitch_of_the_first_two():
    rois, size = with_starts([roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10), roi(3, 10, 10, 10, 10),
                              roi(4, 100, 100, 5, 5)])
    assert [(a.target, b.target) for a, b in find_pairs(rois)] == [(1, 2), (2, 3)]
    plan = plan_images(rois, size, stitching=True)
    assert plan.images == [Image(1, 15, 15, (rois[0], rois[1])), Image(4, 5, 5, (rois[3],))]
    assert plan.pairs == [(1, 2), (2, 3)]


def test_pairs_are_found_over_each_consecutive_couple_independently():
    rois, size = with_starts([roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10), roi(3, 50, 50, 10, 10),
                              roi(5, 52, 52, 10, 10)])   # target 4: a line without an image
    images = plan_images(rois, size, stitching=True).images
    assert [(im.target, [p.target for p in im.parts]) for im in images] == [(1, [1, 2]), (3, [3, 5])]
    # a, c overlapping but with another image line b between them: not a pair
    rois, size = with_starts([roi(1, 0, 0, 10, 10), roi(2, 50, 50, 10, 10, trigger=2), roi(3, 5, 5, 10, 10)])
    assert [im.target for im in plan_images(rois, size, stitching=True).images] == [1, 2, 3]


def test_without_stitching_overlapping_images_are_all_served():
    rois, size = with_starts([roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10), roi(3, 10, 10, 10, 10)])
    plan = plan_images(rois, size, stitching=False)
    assert plan.images == [Image(r.target, 10, 10, (r,)) for r in rois]
    assert plan.pairs == []


def test_a_stitch_whose_second_part_is_missing_is_not_served():
    rois, size = with_starts([roi(1, 0, 0, 10, 10), roi(2, 5, 5, 10, 10)])
    assert plan_images(rois, size - 1, stitching=True).images == []
    assert [im.target for im in plan_images(rois, size - 1, stitching=False).images] == [1]


# --- through Bin.load -----------------------------------------------------------------------

def adc_line(schema: str, trigger: int, x: int, y: int, w: int, h: int, start: int) -> str:
    if schema == "v1":
        return ",".join(map(str, [trigger, 0.5, 0, 0, 0, 0, 0, 0, 0, x, y, w, h, start, 0])) + ","
    return ",".join(map(str, [trigger, 0.5] + [0] * 11 + [x, y, w, h, start] + [0] * 6))


def write_bin(folder, bin_id: str, rois: list[Roi], seed: int = 1):
    """Write BIN.adc/.roi/.hdr with the given ROIs (one ADC line each) and random pixels."""
    rng = random.Random(seed)
    schema = "v2" if bin_id.startswith("D") else "v1"
    lines, data = [], bytearray()
    for r in rois:
        lines.append(adc_line(schema, r.trigger, r.x, r.y, r.width, r.height, len(data)))
        data += rng.randbytes(r.width * r.height)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{bin_id}.adc").write_text("\n".join(lines) + "\n")
    (folder / f"{bin_id}.roi").write_bytes(bytes(data))
    (folder / f"{bin_id}.hdr").write_text("")
    return Bin.load(DataRoot(str(folder)).scan("").bins[bin_id])


def test_d_style_bins_are_never_stitched(tmp_path):
    rois = [roi(1, 0, 0, 40, 30), roi(2, 20, 10, 40, 30), roi(3, 0, 0, 8, 8, trigger=2)]
    b = write_bin(tmp_path, "D20130526T095207_IFCB013", rois)
    assert [e.name for e in b.entries] == [
        "D20130526T095207_IFCB013.hdr", "D20130526T095207_IFCB013_00001.png", "D20130526T095207_IFCB013_00002.png",
        "D20130526T095207_IFCB013_00003.png", "adc.csv", "hdr.json"]
    assert [(im.width, im.height, len(im.parts)) for im in b.images] == [(40, 30, 1), (40, 30, 1), (8, 8, 1)]


def test_i_style_bins_are_stitched(tmp_path):
    rois = [roi(1, 0, 0, 40, 30), roi(2, 20, 10, 40, 30), roi(3, 0, 0, 8, 8, trigger=2)]
    b = write_bin(tmp_path, "IFCB5_2012_028_081515", rois)
    assert [e.name for e in b.entries] == [
        "IFCB5_2012_028_081515.hdr", "IFCB5_2012_028_081515_00001.png", "IFCB5_2012_028_081515_00003.png",
        "adc.csv", "hdr.json"]
    first = b.images[0]
    assert (first.width, first.height) == (60, 40)
    path = b.files.roi.path
    a, c = first.parts
    pa, pc = read_pixels(path, a.start, a.width, a.height), read_pixels(path, c.start, c.width, c.height)
    assert b.pixels(first) == reference(a, pa, c, pc)[2]


def test_the_real_pair(ifcb_data, expected):
    bin_id = "IFCB5_2012_028_081515"
    b = Bin.load(DataRoot(str(ifcb_data / "bins" / bin_id)).scan("").bins[bin_id])
    exp = expected["bins"][bin_id]
    assert exp["stitched_pairs"] == [[3, 4]]
    stitched = [im for im in b.images if len(im.parts) == 2]
    assert [[p.target for p in im.parts] for im in stitched] == [[3, 4]]
    im = stitched[0]
    assert (im.target, im.width, im.height) == (3, 263, 86)
    pixels = b.pixels(im)
    assert hashlib.sha256(pixels).hexdigest() == exp["images"][f"{bin_id}_00003.png"]["pixels_sha256"]
    a, c = im.parts
    path = b.files.roi.path
    assert pixels == reference(a, read_pixels(path, a.start, a.width, a.height),
                               c, read_pixels(path, c.start, c.width, c.height))[2]
    assert 4 not in [i.target for i in b.images]
