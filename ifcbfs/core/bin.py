"""One bin: which files it serves, their exact sizes, and their bytes on demand.

`Bin.load` reads the header and the ADC file and looks at the size of the `.roi`; it reads no
pixel. It decides, in one place, which images the bin serves (`plan_images`), and listing,
sizes and reads all use that decision.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from typing import NamedTuple, Sequence

from . import adc as adc_mod
from .damage import problems
from .errors import ImageMissing
from .hdr import parse_hdr
from .ids import timestamp_iso
from .png import encode_png, png_size
from .roi import read_pixels
from .source import BinFiles, SourceFile, SourceUnreadable
from .stitch import find_pairs, stitch, union_box

HDR_JSON = "hdr.json"
ADC_CSV = "adc.csv"


class Image(NamedTuple):
    """One served image: its target number, size, and the ROI(s) it is made of (two when stitched)."""

    target: int
    width: int
    height: int
    parts: tuple[adc_mod.Roi, ...]


class Entry(NamedTuple):
    """One file in a bin folder."""

    name: str
    size: int
    image: Image | None = None


def plan_images(rois: Sequence[adc_mod.Roi], roi_size: int, stitching: bool) -> list[Image]:
    """The images a bin serves: stitched pairs merged (I-style), nothing whose bytes are missing."""
    pairs = find_pairs(rois) if stitching else []
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
        if all(part.end <= roi_size for part in image.parts):
            images.append(image)
    return images


def _read_source(f: SourceFile | None) -> bytes:
    """The first `size` bytes of a source file: as it was seen, never what was appended since."""
    if f is None:
        return b""
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block us
    except OSError as err:
        raise SourceUnreadable(f"{f.path}: {err.strerror}", err.errno or errno.EIO) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceUnreadable(f"{f.path}: not a regular file", errno.EIO)
        chunks, left = [], f.size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise SourceUnreadable(f"{f.path}: {err.strerror}", err.errno or errno.EIO) from None
    finally:
        os.close(fd)


class Bin:
    """The files one bin serves, for one snapshot of its raw files."""

    def __init__(self, files: BinFiles, header: dict, adc: adc_mod.Adc | None, images: list[Image],
                 settled: bool = False, problems: tuple[str, ...] = ()):
        self.files = files
        self.header = header
        self.images = images
        self.settled = settled  # loaded as final: a last ADC line without its newline has its row
        self.problems = problems  # what is wrong with it (core.damage), judged once settled
        self.n_triggers = adc.n_triggers if adc else 0
        self.skipped_lines = adc.skipped if adc else 0
        self.hdr_json = self._hdr_json()
        stem = str(files.bin_id)
        entries = [Entry(f"{stem}_{im.target:05d}.png", png_size(im.width, im.height), im) for im in images]
        entries.append(Entry(HDR_JSON, len(self.hdr_json)))
        if adc is not None:
            entries.append(Entry(ADC_CSV, adc.csv_size))
        self.entries = sorted(entries, key=lambda e: e.name)
        self.by_name = {e.name: e for e in self.entries}

    @classmethod
    def load(cls, files: BinFiles, settled: bool = False) -> "Bin":
        """Parse a bin's header and ADC, `settled` (no longer growing: see core.settle) or not;
        raises SourceUnreadable when a file cannot be read."""
        hdr = _read_source(files.hdr)
        header = parse_hdr(hdr)
        adc = None
        images: list[Image] = []
        if files.adc is not None:
            adc = adc_mod.parse_adc(_read_source(files.adc), files.bin_id.schema, final=settled)
            if files.roi is not None:
                images = plan_images(adc.rois, files.roi.size, files.bin_id.style == "I")
        return cls(files, header, adc, images, settled, problems(files, hdr, adc) if settled else ())

    def _hdr_json(self) -> bytes:
        bin_id = self.files.bin_id
        doc = {
            "bin_id": str(bin_id),
            "timestamp": timestamp_iso(bin_id),
            "instrument": bin_id.instrument,
            "schema": bin_id.schema,
            "n_triggers": self.n_triggers,
            "n_images": len(self.images),
            "header": self.header,
        }
        return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    def pixels(self, image: Image) -> bytes:
        """The image's pixels (stitched when it has two parts). Raises ImageMissing if gone."""
        path = self.files.roi.path if self.files.roi else ""
        data = [read_pixels(path, p.start, p.width, p.height) for p in image.parts]
        if len(data) == 1:
            return data[0]
        return stitch(image.parts[0], data[0], image.parts[1], data[1])

    def read(self, name: str) -> bytes:
        """The bytes of one entry. Raises ImageMissing when it can no longer be produced as listed."""
        entry = self.by_name.get(name)
        if entry is None:
            raise ImageMissing(f"{self.files.bin_id}: no file {name}")
        if entry.image is not None:
            data = encode_png(entry.image.width, entry.image.height, self.pixels(entry.image))
        elif name == HDR_JSON:
            data = self.hdr_json
        else:
            data = adc_mod.parse_adc(_read_source(self.files.adc), self.files.bin_id.schema, self.settled).csv
        if len(data) != entry.size:
            raise ImageMissing(f"{self.files.bin_id}: {name} changed in the source since it was listed")
        return data
