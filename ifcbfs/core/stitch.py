"""Stitching of I-style ROI pairs (SPEC section 5): pair detection, compositing and gap infill.

One compositing function (`composite`) gives the canvas before infill, the gap and the fill
value; the stitched image, the raw composite and the gap mask are all views of it.

The gap of a stitch is the union box minus two rectangles, so each canvas row holds at most a
few gap and covered intervals. Infill works on those intervals row by row (O(height) Python
steps, the pixel work done by slices), never pixel by pixel.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from .adc import Roi

Intervals = list[tuple[int, int]]


def is_pair(a: Roi, b: Roi) -> bool:
    """True when consecutive image lines a, b are two parts of one particle."""
    return (
        a.trigger == b.trigger
        and a.x < b.x + b.width - 2 and a.x + a.width > b.x + 2
        and a.y < b.y + b.height - 2 and a.y + a.height > b.y + 2
    )


def find_pairs(rois: Sequence[Roi]) -> list[tuple[Roi, Roi]]:
    """Every consecutive couple of image lines that is a pair, in ADC order."""
    return [(a, b) for a, b in zip(rois, rois[1:]) if is_pair(a, b)]


def union_box(a: Roi, b: Roi) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the box that covers both ROIs."""
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
    return x0, y0, x1 - x0, y1 - y0


class Composite(NamedTuple):
    """A pair pasted on its union box before infill: the raw canvas (gap pixels 0), the gap as
    intervals of each row, and the value the infill puts there. QC views and the stitch share it."""

    width: int
    height: int
    raw: bytes
    gaps: tuple[Intervals, ...]
    fill: int

    def stitched(self) -> bytes:
        """The stitched image of SPEC section 5: the raw canvas with every gap pixel set to `fill`."""
        return self._paint(self.raw, self.fill)

    def gap_mask(self) -> bytes:
        """255 where the gap is, 0 elsewhere: what the infill filled."""
        return self._paint(bytes(self.width * self.height), 255)

    def _paint(self, canvas: bytes, value: int) -> bytes:
        if not any(self.gaps):
            return canvas
        out, fill, width = bytearray(canvas), bytes([value]) * self.width, self.width
        for y, row in enumerate(self.gaps):
            for start, end in row:
                out[y * width + start:y * width + end] = fill[:end - start]
        return bytes(out)


def composite(a: Roi, pixels_a: bytes, b: Roi, pixels_b: bytes) -> Composite:
    """Paste a, then b over it, on the union box; find the gap and its fill value (SPEC section 5)."""
    x0, y0, width, height = union_box(a, b)
    canvas = bytearray(width * height)
    boxes = []
    for roi, pixels in ((a, pixels_a), (b, pixels_b)):
        left, top = roi.x - x0, roi.y - y0
        for row in range(roi.height):
            at = (top + row) * width + left
            canvas[at:at + roi.width] = pixels[row * roi.width:(row + 1) * roi.width]
        boxes.append((left, top, left + roi.width, top + roi.height))
    covered = [_covered(boxes, y) for y in range(height)]
    gaps = tuple(_complement(spans, width) for spans in covered)
    return Composite(width, height, bytes(canvas), gaps, _fill_value(canvas, width, covered, gaps))


def stitch(a: Roi, pixels_a: bytes, b: Roi, pixels_b: bytes) -> bytes:
    """Pixels (row-major, union-box sized) of the stitch of a pair: a, then b over it, gap filled."""
    return composite(a, pixels_a, b, pixels_b).stitched()


def _covered(boxes: list[tuple[int, int, int, int]], y: int) -> Intervals:
    return _merge([(x0, x1) for x0, y0, x1, y1 in boxes if y0 <= y < y1])


def _merge(spans: Intervals) -> Intervals:
    merged: Intervals = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _complement(spans: Intervals, width: int) -> Intervals:
    gaps, at = [], 0
    for start, end in spans:
        if start > at:
            gaps.append((at, start))
        at = end
    if at < width:
        gaps.append((at, width))
    return gaps


def _intersect(p: Intervals, q: Intervals) -> Intervals:
    return [(max(s, t), min(e, f)) for s, e in p for t, f in q if max(s, t) < min(e, f)]


def _fill_value(canvas: bytearray, width: int, covered: list[Intervals], gaps: tuple[Intervals, ...]) -> int:
    """The rounded mean of the covered pixels that have a gap pixel among their 4 neighbours."""
    if not any(gaps):
        return 0
    height = len(gaps)
    total = count = 0
    for y in range(height):
        edge = [(s - 1, s) for s, e in gaps[y] if s > 0] + [(e, e + 1) for s, e in gaps[y] if e < width]
        for near in (y - 1, y + 1):
            if 0 <= near < height:
                edge += _intersect(covered[y], gaps[near])
        for start, end in _merge(edge):
            total += sum(canvas[y * width + start:y * width + end])
            count += end - start
    return round_half_even(total, count) if count else 0


def round_half_even(total: int, count: int) -> int:
    """total / count rounded to the nearest integer, ties to even (Python 3 `round`), exactly."""
    q, r = divmod(total, count)
    if 2 * r > count or (2 * r == count and q % 2):
        q += 1
    return q
