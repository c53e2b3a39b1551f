"""Mosaic pages (SPEC section 10): the packer's layout from sizes alone, coordinates.csv, pixels."""
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import ifcbfs
from ifcbfs.core.mosaic import (
    BACKGROUND, Mosaic, Placement, coordinates_csv, layout, page_count, page_name, page_placements,
    parse_mosaic, render_page, tile_size,
)
from ifcbfs.core.png import encode_png, png_size

EXACT = settings(max_examples=150, deadline=None, database=None, derandomize=True)
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR


def reference_layout(tiles, page_w, page_h, scale):
    """The SPEC's packer written plainly: free rectangles in a slot table (a freed slot is
    reused lowest first), full scans, new rectangles merged in slot order pass after pass."""
    waiting = sorted(((t, *tile_size(w, h, page_w, page_h, scale)) for t, w, h in tiles),
                     key=lambda t: (-t[1] * t[2], t[0]))
    pages = []
    while waiting:
        slots = [(0, 0, page_w, page_h)]

        def add(rect):
            merged = True
            while merged:
                merged = False
                for i, other in enumerate(slots):
                    if other is None:
                        continue
                    x, y, w, h = rect
                    ox, oy, ow, oh = other
                    if y == oy and h == oh and (x + w == ox or ox + ow == x):
                        rect, slots[i], merged = (min(x, ox), y, w + ow, h), None, True
                    elif x == ox and w == ow and (y + h == oy or oy + oh == y):
                        rect, slots[i], merged = (x, min(y, oy), w, h + oh), None, True
            if None in slots:
                slots[slots.index(None)] = rect
            else:
                slots.append(rect)

        placed, left = [], []
        for target, w, h in waiting:
            fits = [(fw * fh - w * h, i) for i, (fx, fy, fw, fh) in
                    ((i, s) for i, s in enumerate(slots) if s is not None) if w <= fw and h <= fh]
            if not fits:
                left.append((target, w, h))
                continue
            i = min(fits)[1]
            fx, fy, fw, fh = slots[i]
            slots[i] = None
            if fh - h < fw - w:
                if w < fw:
                    add((fx + w, fy, fw - w, fh))
                if h < fh:
                    add((fx, fy + h, w, fh - h))
            else:
                if w < fw:
                    add((fx + w, fy, fw - w, h))
                if h < fh:
                    add((fx, fy + h, fw, fh - h))
            placed.append(Placement(target, fx, fy, w, h))
        pages.append(placed)
        waiting = left
    return pages


def check_layout(tiles, pages, page_w, page_h, scale):
    """Every tile placed once, at its scaled size, inside its page, overlapping no other."""
    sizes = {t: tile_size(w, h, page_w, page_h, scale) for t, w, h in tiles}
    seen = [p.target for page in pages for p in page]
    assert sorted(seen) == sorted(sizes)
    for page in pages:
        assert page, "no empty pages"
        used = bytearray(page_w * page_h)
        for p in page:
            assert (p.width, p.height) == sizes[p.target]
            assert 0 <= p.x and p.x + p.width <= page_w and 0 <= p.y and p.y + p.height <= page_h
            for row in range(p.y, p.y + p.height):
                at = row * page_w + p.x
                assert not any(used[at:at + p.width]), f"{p} overlaps another tile"
                used[at:at + p.width] = b"\x01" * p.width


# --- sizes ---------------------------------------------------------------------------------

def test_tile_size_scales_floors_and_keeps_one_pixel():
    assert tile_size(100, 60) == (33, 19)
    assert tile_size(1, 1) == (1, 1)
    assert tile_size(2, 300) == (1, 99)
    assert tile_size(1380, 1034) == (455, 341)  # a whole camera frame
    assert tile_size(100, 60, scale=100) == (100, 60)


def test_a_tile_larger_than_the_page_is_scaled_down_to_fit():
    assert tile_size(3000, 1000) == (800, 266)  # 990 x 330 at 33 %: width-bound
    assert tile_size(100, 5000) == (12, 600)  # 33 x 1650: height-bound
    assert tile_size(2425, 1819) == (800, 600)  # just fits: not scaled down
    assert tile_size(4848, 3636) == (800, 600)  # twice the page, same shape
    assert tile_size(100000, 1, 50, 10, 100) == (50, 1)  # never below 1 px


# --- the packer ----------------------------------------------------------------------------

def test_best_area_fit_and_the_split_rule_by_hand():
    pages = layout([(1, 60, 50), (2, 40, 50), (3, 30, 30)], 100, 100, 100)
    # 1 leaves 50 below and 40 right: a tile-high strip right (40x50), full-width below (100x50);
    # 2 fits the 40x50 strip exactly; 3 goes to the top left of the 100x50 strip below
    assert pages == [[Placement(1, 0, 0, 60, 50), Placement(2, 60, 0, 40, 50),
                      Placement(3, 0, 50, 30, 30)]]


def test_free_rectangles_sharing_a_whole_edge_merge():
    # after 1 and 2, the strips under them (0,6 5x4 and 5,6 5x4) merge into one 10x4 rectangle
    # in the lowest slot; unmerged, 3 would go to the lower slot's 5,6
    pages = layout([(1, 5, 6), (2, 5, 6), (3, 2, 2)], 10, 10, 100)
    assert pages == [[Placement(1, 0, 0, 5, 6), Placement(2, 5, 0, 5, 6), Placement(3, 0, 6, 2, 2)]]


def test_ties_in_area_go_by_target_and_tiles_that_fit_nowhere_wait():
    tiles = [(9, 6, 10), (4, 10, 6), (7, 4, 4)]
    pages = layout(tiles, 10, 10, 100)
    # 4 (10x6) goes first; 9 (6x10) no longer fits and waits; 7 fits the 10x4 strip below 4
    assert [[p.target for p in page] for page in pages] == [[4, 7], [9]]
    check_layout(tiles, pages, 10, 10, 100)


def test_no_tiles_no_pages():
    assert layout([]) == []
    assert coordinates_csv([]) == b"page,x,y,width,height,target\n"


def test_bad_page_sizes_are_refused():
    for args in ((0, 600, 33), (800, -1, 33), (800, 600, 0)):
        with pytest.raises(ValueError):
            layout([(1, 10, 10)], *args)


@EXACT
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(1, 300)), max_size=60),
       st.sampled_from([(800, 600, 33), (100, 80, 50), (30, 30, 100), (640, 480, 25)]))
def test_layout_is_a_valid_packing_and_the_spec_packer(sizes, page):
    tiles = [(t, w, h) for t, (w, h) in enumerate(sizes, 1)]
    pages = layout(tiles, *page)
    check_layout(tiles, pages, *page)
    assert pages == reference_layout(tiles, *page)
    assert layout(list(reversed(tiles)), *page) == pages  # input order does not matter


def test_larger_random_bins_match_the_spec_packer():
    rng = random.Random(12)
    for n, side in ((400, 120), (300, 1500), (600, 40)):
        tiles = [(t, rng.randint(1, side), rng.randint(1, side)) for t in range(1, n + 1)]
        pages = layout(tiles)
        check_layout(tiles, pages, 800, 600, 33)
        assert pages == reference_layout(tiles, 800, 600, 33)


def test_tiles_bigger_than_the_page_each_take_a_page():
    tiles = [(1, 3000, 3000), (2, 3000, 3000), (3, 600, 6000)]
    pages = layout(tiles)  # 990x990 -> 600x600; 198x1980 -> 60x600
    assert [[(p.target, p.x, p.y, p.width, p.height) for p in page] for page in pages] == [
        [(1, 0, 0, 600, 600), (3, 600, 0, 60, 600)], [(2, 0, 0, 600, 600)]]


def test_thousands_of_tiny_tiles():
    rng = random.Random(3)
    tiles = [(t, rng.randint(1, 30), rng.randint(1, 30)) for t in range(1, 20001)]
    pages = layout(tiles)
    check_layout(tiles, pages, 800, 600, 33)
    whole_frames = layout([(t, 1380, 1034) for t in range(1, 3001)])  # one per page, no stall
    assert len(whole_frames) == 3000


def test_layout_is_deterministic():
    rng = random.Random(7)
    tiles = [(t, rng.randint(1, 600), rng.randint(1, 400)) for t in range(1, 300)]
    assert layout(tiles) == layout(list(tiles)) == layout(sorted(tiles, key=lambda t: -t[0]))


# --- files ---------------------------------------------------------------------------------

def test_coordinates_csv_and_page_names():
    pages = layout([(1, 5, 6), (2, 5, 6), (3, 2, 2), (4, 10, 10)], 10, 10, 100)
    assert coordinates_csv(pages) == (b"page,x,y,width,height,target\n"
                                      b"1,0,0,10,10,4\n"
                                      b"2,0,0,5,6,1\n2,5,0,5,6,2\n2,0,6,2,2,3\n")
    assert page_name(1) == "page-001.png" and page_name(1234) == "page-1234.png"


def test_coordinates_read_back_page_by_page():
    rng = random.Random(5)
    tiles = [(t, rng.randint(1, 400), rng.randint(1, 300)) for t in range(1, 200)]
    pages = layout(tiles, 300, 200, 50)
    data = coordinates_csv(pages)
    assert page_count(data) == len(pages) > 3
    assert [page_placements(data, n) for n in range(1, len(pages) + 1)] == pages
    assert page_count(coordinates_csv([])) == 0 and page_placements(coordinates_csv([]), 1) == []
    assert page_placements(data, len(pages) + 1) == []


def test_page_shapes_parse_and_bad_ones_are_one_line_errors():
    assert parse_mosaic("") == Mosaic() == (800, 600, 33) and str(Mosaic()) == "800x600@33"
    assert parse_mosaic("1024x768@50") == (1024, 768, 50)
    assert parse_mosaic("640x480") == (640, 480, 33) and parse_mosaic("@100") == (800, 600, 100)
    assert parse_mosaic("4096x4096@1") == (4096, 4096, 1)
    for bad in ("x", "800x", "800x600@", "800*600", "0x600", "800x600@0", "800x600@101",
                "4097x4096", " 800x600", "800x600@33,zip", "-1x5", "８００x600"):
        with pytest.raises(ValueError) as err:
            parse_mosaic(bad)
        assert str(err.value).startswith(f"mosaic={bad!r}: expected WxH@S") and "\n" not in str(err.value)


def image_bytes(w, h, salt):
    return bytes((x * 31 + y * 17 + salt * 7) & 0xFF for y in range(h) for x in range(w))


def test_rendered_tiles_are_pillows_bilinear_resize_on_background_200():
    images = {t: (w, h, image_bytes(w, h, t)) for t, w, h in
              [(1, 300, 200), (2, 90, 45), (3, 2, 400), (4, 3, 3), (5, 4000, 900)]}
    pages = layout([(t, w, h) for t, (w, h, _) in images.items()])
    assert [(p.target, p.width, p.height) for p in pages[0]][:1] == [(5, 800, 180)]
    for page in pages:
        raw = render_page(page, 800, 600, images.__getitem__)
        assert len(raw) == 800 * 600
        canvas = Image.frombytes("L", (800, 600), raw)
        covered = set()
        for p in page:
            w, h, data = images[p.target]
            expected = Image.frombytes("L", (w, h), data).resize((p.width, p.height), BILINEAR)
            box = (p.x, p.y, p.x + p.width, p.y + p.height)
            assert canvas.crop(box).tobytes() == expected.tobytes()
            covered.update((x, y) for x in range(p.x, box[2]) for y in range(p.y, box[3]))
        background = [canvas.getpixel((x, y)) for x in range(0, 800, 7) for y in range(0, 600, 7)
                      if (x, y) not in covered]
        assert background and set(background) == {BACKGROUND}
        png = encode_png(800, 600, raw)
        assert len(png) == png_size(800, 600)
        assert Image.open(io.BytesIO(png)).tobytes() == raw


def test_real_bins_lay_out_and_render(ifcb_data):
    root = ifcbfs.open_root(str(ifcb_data / "bins"))
    bins = [b for b in ifcbfs.bins(root) if b.images]
    assert len(bins) >= 5
    for b in bins:
        tiles = [(im.target, im.width, im.height) for im in b.images]
        pages = layout(tiles)
        check_layout(tiles, pages, 800, 600, 33)
        assert pages == reference_layout(tiles, 800, 600, 33)
        csv = coordinates_csv(pages).decode().splitlines()
        assert len(csv) == 1 + len(tiles)
    small = min(bins, key=lambda b: len(b.images))  # render the cheapest one
    page = layout([(im.target, im.width, im.height) for im in small.images])[0]

    def pixels_of(target):
        im = ifcbfs.image(small, target)
        return im.width, im.height, im.tobytes()

    raw = render_page(page, 800, 600, pixels_of)
    canvas = Image.frombytes("L", (800, 600), raw)
    for p in page:
        expected = ifcbfs.image(small, p.target).resize((p.width, p.height), BILINEAR)
        assert canvas.crop((p.x, p.y, p.x + p.width, p.y + p.height)).tobytes() == expected.tobytes()
