"""Mosaic pages of a bin (SPEC section 10): a layout from image sizes alone, then the pixels.

The layout is the IFCB dashboard's guillotine packer, in its page's own coordinates: x to the
right, y down, origin at the top left. Where the SPEC is silent, the dashboard's behaviour
decides:
- Ties between free rectangles of equal spare area go to the one in the lowest slot of a
  table in which a freed slot is reused lowest first (the dashboard keeps its free rectangles
  so, and picks the first best).
- A new free rectangle is merged with the others in slot order, growing as it goes, pass after
  pass until a pass merges nothing; then it takes the lowest free slot.
- Each page is filled from every tile not yet placed, in sorted order; those that fit nowhere
  wait for the next page. A page starts as one free rectangle, the whole page.
Where the dashboard differs, the SPEC decides: ties in area go by target number (the dashboard
sorts unstably); a tile is at least 1 px; and a tile larger than the page is scaled down, aspect
kept, to fit (the dashboard loops forever on one). Page numbers start at 1.
"""
from __future__ import annotations

import bisect
import heapq
import re
from typing import Callable, Iterable, NamedTuple, Sequence

BACKGROUND = 200
PAGE_W, PAGE_H, SCALE = 800, 600, 33
COORDINATES = "coordinates.csv"
MAX_PAGE_PIXELS = 1 << 24  # a page is held in memory while it is drawn: 16 MB at most
_SHAPE = re.compile(r"(?:(\d{1,9})x(\d{1,9}))?(?:@(\d{1,9}))?", re.ASCII)


class Mosaic(NamedTuple):
    """The shape of a bin's mosaic pages: W x H pixels, images scaled by S percent."""

    width: int = PAGE_W
    height: int = PAGE_H
    scale: int = SCALE

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.scale}"


def parse_mosaic(text: str) -> Mosaic:
    """`WxH@S`, `WxH` or `@S` (what is left out takes its default; "" is 800x600@33).
    Raises ValueError with a one-line message for anything else."""
    m = _SHAPE.fullmatch(text)
    if m is not None:
        w, h, s = (int(g) if g else d for g, d in zip(m.groups(), Mosaic()))
        if 1 <= w and 1 <= h and w * h <= MAX_PAGE_PIXELS and 1 <= s <= 100:
            return Mosaic(w, h, s)
    raise ValueError(f"mosaic={text!r}: expected WxH@S like 800x600@33: a page of W x H pixels "
                     f"(at most {MAX_PAGE_PIXELS} in all), images scaled by S percent (1 to 100)")


class Placement(NamedTuple):
    """Where one tile goes on its page, at its scaled size."""

    target: int
    x: int
    y: int
    width: int
    height: int


def page_name(number: int) -> str:
    """File name of page `number` (1-based): `page-001.png`."""
    return f"page-{number:03d}.png"


def tile_size(width: int, height: int, page_w: int = PAGE_W, page_h: int = PAGE_H,
              scale: int = SCALE) -> tuple[int, int]:
    """An image's size on the page: scaled by `scale` percent, at least 1 px, within the page."""
    w, h = max(width * scale // 100, 1), max(height * scale // 100, 1)
    if w <= page_w and h <= page_h:
        return w, h
    if width * page_h >= height * page_w:  # the width is what limits
        return page_w, max(height * page_w // width, 1)
    return max(width * page_h // height, 1), page_h


class _Page:
    """The free rectangles of one page, kept in slots, with indexes for fit and merge."""

    def __init__(self, width: int, height: int):
        self.slots: list[tuple[int, int, int, int] | None] = []
        self.free_slots: list[int] = []  # a heap of freed slot numbers below len(slots)
        self.by_area: list[tuple[int, int]] = []  # (area, slot), sorted: best area fit, then slot
        # slot by edge: a rectangle's left edge (x, y, h), right edge (x + w, y, h),
        # top edge (x, y, w) and bottom edge (x, y + h, w)
        self.left: dict[tuple[int, int, int], int] = {}
        self.right: dict[tuple[int, int, int], int] = {}
        self.top: dict[tuple[int, int, int], int] = {}
        self.bottom: dict[tuple[int, int, int], int] = {}
        self._append((0, 0, width, height))

    def _append(self, rect: tuple[int, int, int, int]) -> None:
        slot = heapq.heappop(self.free_slots) if self.free_slots else len(self.slots)
        if slot == len(self.slots):
            self.slots.append(rect)
        else:
            self.slots[slot] = rect
        x, y, w, h = rect
        bisect.insort(self.by_area, (w * h, slot))
        self.left[x, y, h] = self.right[x + w, y, h] = slot
        self.top[x, y, w] = self.bottom[x, y + h, w] = slot

    def _delete(self, slot: int) -> None:
        x, y, w, h = self.slots[slot]
        self.slots[slot] = None
        heapq.heappush(self.free_slots, slot)
        del self.by_area[bisect.bisect_left(self.by_area, (w * h, slot))]
        del self.left[x, y, h], self.right[x + w, y, h], self.top[x, y, w], self.bottom[x, y + h, w]

    def _neighbours(self, rect: tuple[int, int, int, int]) -> list[int]:
        """Slots of the free rectangles that share a whole edge with `rect`.

        Free rectangles never overlap, so no other pair merges (nor contains one another)."""
        x, y, w, h = rect
        found = (self.right.get((x, y, h)), self.left.get((x + w, y, h)),
                 self.bottom.get((x, y, w)), self.top.get((x, y + h, w)))
        return [slot for slot in found if slot is not None]

    def _add(self, rect: tuple[int, int, int, int]) -> None:
        """Add a free rectangle, merged with its neighbours as the dashboard's slot scan does."""
        merged = True
        while merged:
            merged, after = False, -1
            while True:
                later = [s for s in self._neighbours(rect) if s > after]
                if not later:
                    break
                after = min(later)
                x, y, w, h = rect
                xx, yy, ww, hh = self.slots[after]
                if y == yy and h == hh:
                    rect = (min(x, xx), y, w + ww, h)
                else:
                    rect = (x, min(y, yy), w, h + hh)
                self._delete(after)
                merged = True
        self._append(rect)

    def largest(self) -> int:
        """Area of the largest free rectangle (0 when the page is full)."""
        return self.by_area[-1][0] if self.by_area else 0

    def place(self, w: int, h: int) -> tuple[int, int] | None:
        """Put a w x h tile in the best-area-fit free rectangle; its top left, or None."""
        by_area, slots = self.by_area, self.slots
        for i in range(bisect.bisect_left(by_area, (w * h, -1)), len(by_area)):
            fx, fy, fw, fh = slots[by_area[i][1]]
            if w <= fw and h <= fh:
                slot = by_area[i][1]
                break
        else:
            return None
        self._delete(slot)
        if fh - h < fw - w:  # a full-height strip right of the tile, a tile-wide strip below
            if w < fw:
                self._add((fx + w, fy, fw - w, fh))
            if h < fh:
                self._add((fx, fy + h, w, fh - h))
        else:  # a tile-high strip right of the tile, a full-width strip below
            if w < fw:
                self._add((fx + w, fy, fw - w, h))
            if h < fh:
                self._add((fx, fy + h, fw, fh - h))
        return fx, fy


def layout(tiles: Iterable[tuple[int, int, int]], page_w: int = PAGE_W, page_h: int = PAGE_H,
           scale: int = SCALE) -> list[list[Placement]]:
    """Pages of placements for images given as (target, width, height); from sizes alone.

    Tiles are scaled (`tile_size`), sorted by area, largest first, then by target number, and
    packed page by page; each page lists its placements in the order they were made."""
    if page_w < 1 or page_h < 1 or scale < 1:
        raise ValueError(f"mosaic page {page_w}x{page_h} at {scale}% is not a positive size")
    sized = [(target, *tile_size(w, h, page_w, page_h, scale)) for target, w, h in tiles]
    sized.sort(key=lambda t: (-t[1] * t[2], t[0]))
    # Consecutive tiles of one shape form a run: once one of them fits nowhere, neither does
    # the rest of its run until another tile is placed, so a page passes a run by at once.
    runs: list[tuple[int, int, list[int], int]] = []  # (w, h, targets, first not yet placed)
    for target, w, h in sized:
        if runs and runs[-1][:2] == (w, h):
            runs[-1][2].append(target)
        else:
            runs.append((w, h, [target], 0))
    pages = []
    while runs:
        page, placed, left = _Page(page_w, page_h), [], []
        keys = [-w * h for w, h, _, _ in runs]  # ascending
        i = 0
        while i < len(runs):
            # Runs of tiles larger than the largest free rectangle fit nowhere: pass them all by
            # (the free rectangles change only when a tile is placed).
            at = bisect.bisect_left(keys, -page.largest(), i)
            left.extend(runs[i:at])
            if at == len(runs):
                break
            w, h, targets, first = runs[at]
            while first < len(targets):
                corner = page.place(w, h)
                if corner is None:
                    break
                placed.append(Placement(targets[first], corner[0], corner[1], w, h))
                first += 1
            if first < len(targets):
                left.append((w, h, targets, first))
            i = at + 1
        pages.append(placed)
        runs = left
    return pages


def coordinates_csv(pages: Sequence[Sequence[Placement]]) -> bytes:
    """`coordinates.csv`: `page,x,y,width,height,target`, one row per tile, pages from 1."""
    rows = ["page,x,y,width,height,target"]
    for number, page in enumerate(pages, 1):
        rows.extend(f"{number},{p.x},{p.y},{p.width},{p.height},{p.target}" for p in page)
    return ("\n".join(rows) + "\n").encode("ascii")


def page_count(coordinates: bytes) -> int:
    """How many pages a `coordinates.csv` describes (the page of its last row; 0 for none)."""
    last = coordinates.rstrip(b"\n").rpartition(b"\n")[2]
    return int(last.partition(b",")[0]) if last[:1].isdigit() else 0


def page_placements(coordinates: bytes, number: int) -> list[Placement]:
    """The placements of page `number` read back from its `coordinates.csv`, in their order."""
    prefix = b"%d," % number
    return [Placement(t, x, y, w, h) for _, x, y, w, h, t in
            (map(int, line.split(b",")) for line in coordinates.split(b"\n") if line.startswith(prefix))]


def render_page(placements: Iterable[Placement], page_w: int, page_h: int,
                pixels_of: Callable[[int], tuple[int, int, bytes]]) -> bytes:
    """A page's raw 8-bit pixels (page_h rows of page_w): background 200, each tile's image
    scaled to its placement with Pillow's bilinear filter. `pixels_of(target)` gives the image
    as (width, height, pixels); encode the result with png.encode_png(page_w, page_h, ...)."""
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    page = Image.new("L", (page_w, page_h), BACKGROUND)
    for p in placements:
        width, height, pixels = pixels_of(p.target)
        tile = Image.frombytes("L", (width, height), pixels)
        if (width, height) != (p.width, p.height):
            tile = tile.resize((p.width, p.height), bilinear)
        page.paste(tile, (p.x, p.y))
    return page.tobytes()
