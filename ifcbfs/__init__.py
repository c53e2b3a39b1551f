"""ifcbfs: raw IFCB data (.hdr/.adc/.roi) as folders of exact PNG images.

The small public API of the parsing core::

    import ifcbfs
    root = ifcbfs.open_root("/data/ifcb")
    for b in ifcbfs.bins(root):                 # lazily, folder by folder
        print(b.files.bin_id, [e.name for e in b.entries])
        img = ifcbfs.image(b, b.images[0].target)   # a PIL Image
        png = ifcbfs.png(b, b.images[0].target)     # the exact bytes the mount serves
"""
from __future__ import annotations

import time
from typing import Iterator

from .core.bin import Bin
from .core.records import Entry, Image
from .core.errors import BinError, IdentifierError, ImageMissing
from .core.ids import BinId, parse_bin_id, target_id
from .core.settle import settled
from .core.source import BinFiles, DataRoot

__version__ = "0.2.0"
__all__ = [
    "Bin", "BinError", "BinFiles", "BinId", "DataRoot", "Entry", "IdentifierError", "Image",
    "ImageMissing", "bins", "image", "open_root", "parse_bin_id", "png", "target_id",
]


def open_root(path: str, include_skipped: bool = False) -> DataRoot:
    """A data root: a folder tree of raw bins (`skip` and `beads` folders left out by default)."""
    return DataRoot(path, include_skipped=include_skipped)


def bins(root: DataRoot, folder: str = "", stitch: str = "on") -> Iterator[Bin]:
    """Every bin below `folder` of the root, loaded as the mount loads it (header and ADC
    parsed, no pixel read; a bin unchanged for a minute is taken as complete); `stitch` as the
    mount's option: "on", "off" (every ROI as cut) or "qc"."""
    for files in root.walk(folder):
        yield Bin.load(files, stitch, settled=settled(files, time.time()))


def _image(b: Bin, target: int) -> Image:
    for im in b.images:
        if im.target == target:
            return im
    raise ImageMissing(f"{b.files.bin_id} serves no image {target}")


def png(b: Bin, target: int) -> bytes:
    """The PNG bytes of one image, exactly as the mount serves `BIN_NNNNN.png`."""
    return b.read(f"{target_id(str(b.files.bin_id), target)}.png")


def image(b: Bin, target: int):
    """One image as a PIL Image (mode 'L'), stitched where the SPEC says."""
    from PIL import Image as PILImage

    im = _image(b, target)
    return PILImage.frombytes("L", (im.width, im.height), b.pixels(im))
