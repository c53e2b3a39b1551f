"""A bin folder's records: the names and codes of its files, an image and the ROIs it is made
of (`Image`), a file (`Entry`), and which images a bin serves (`plan_images`), decided in one
place for listing, sizes and reads.
"""
from __future__ import annotations

from itertools import repeat
from operator import add, mul, or_
from typing import NamedTuple, Sequence

from . import adc as adc_mod
from . import listing as listing_mod
from .png import png_size
from .stitch import find_pairs, union_box

HDR_JSON = "hdr.json"
ADC_CSV = "adc.csv"
QC_FOLDER = "stitching"
MOSAIC_FOLDER = "mosaic"
STITCH_MODES = ("on", "off", "qc")


class Image(NamedTuple):
    """One served image: its target number, size, and the ROI(s) it is made of (two when stitched)."""

    target: int
    width: int
    height: int
    parts: tuple[adc_mod.Roi, ...]


class Entry(NamedTuple):
    """One file in a bin folder (a record): its name (a '/' puts it in a sub-folder), its exact
    size, its code (stable within the bin: the low bits of its inode), whether it can still
    change while the bin grows (such files are read past the page cache), and the image it is."""

    name: str
    size: int
    image: Image | None = None
    code: int = 0
    grows: bool = False
    view: str = ""  # of a stitched image: "" itself, "raw" before infill, "gap" its gap mask


# Entry codes: the kind of file in the high bits, a number (a target) in the low ones.
KIND_SHIFT = 20
CODE_HDR_JSON, CODE_ADC_CSV, CODE_RAW_HDR, CODE_COORDINATES, CODE_ZIP = 1, 2, 3, 4, 5
CODE_CLASS_SCORES, CODE_CLASSES = 8, 9  # generated from the class file (SPEC section 9)
KIND_IMAGE, KIND_RAW, KIND_GAP, KIND_PAGE = 1, 2, 3, 4  # KIND_PAGE: a mosaic page, by number
KIND_FEATURES, KIND_MULTIBLOB = 6, 7  # a product file's bytes, by version
KIND_BLOB = 8  # a blob mask from the blobs zip, by target
KIND_FOLDER = 15
CODE_MASK = (1 << KIND_SHIFT) - 1


class Plan(NamedTuple):
    """Which images a bin serves, and the stitched pairs (first, second target) found on the way."""

    images: list[Image]
    pairs: list[tuple[int, int]]


def plan_images(rois: Sequence[adc_mod.Roi], roi_size: int, stitching: bool) -> Plan:
    """The images a bin serves: stitched pairs merged (I-style), nothing whose bytes are missing.
    Without stitching every ROI is its own image and no pair is reported."""
    pairs = find_pairs(rois) if stitching else []
    if not pairs:  # every ROI is its own image (whole columns at a time: a bin has thousands)
        targets, widths, heights, starts = listing_mod.fields(rois, 0, 4, 5, 6)
        images = map(tuple.__new__, repeat(Image), zip(targets, widths, heights, zip(rois)))
        ends = list(map(add, starts, map(mul, widths, heights)))
        if not ends or max(ends) <= roi_size:
            return Plan(list(images), [])
        return Plan([im for im, end in zip(images, ends) if end <= roi_size], [])
    partner = {a.target: b for a, b in pairs}
    second = {b.target for _, b in pairs}
    images = []
    for roi in rois:
        if roi.target in second:
            continue
        other = partner.get(roi.target)
        if other is None:
            image = Image(roi.target, roi.width, roi.height, (roi,))
        else:
            _, _, width, height = union_box(roi, other)
            if width * height > adc_mod.MAX_IMAGE_PIXELS:
                continue
            image = Image(roi.target, width, height, (roi, other))
        if image.parts[-1].end <= roi_size and image.parts[0].end <= roi_size:
            images.append(image)
    return Plan(images, [(a.target, b.target) for a, b in pairs])


def image_entries(stem: str, images: list[Image]) -> list[Entry]:
    """One entry per image, `{stem}_{target:05d}.png` (by whole columns: a bin has thousands)."""
    targets, widths, heights = listing_mod.fields(images, 0, 1, 2)
    names = map(f"{stem}_{{:05d}}.png".format, targets)  # (a bin id has no braces)
    sizes = map(png_size, widths, heights)
    codes = map(or_, repeat(KIND_IMAGE << KIND_SHIFT), targets)
    return list(map(tuple.__new__, repeat(Entry), zip(names, sizes, images, codes, repeat(False), repeat(""))))
