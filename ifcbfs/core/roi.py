"""Ranged reads of one image's bytes from a `.roi` file, through the bin's source."""
from __future__ import annotations

import errno

from .errors import ImageMissing, RoiError
from .source import Source, SourceFile, SourceUnreadable


class RoiUnreadable(RoiError, SourceUnreadable):
    """The `.roi` file exists but this process may not read it: carries the errno (EACCES)."""


def read_pixels(source: Source, roi: SourceFile, start: int, width: int, height: int) -> bytes:
    """The width*height bytes of one image at `start`, by one ranged read.

    Raises ImageMissing when the file ends before the image does (truncated, or still being
    written), RoiUnreadable (a RoiError with an errno) when permissions forbid reading it, and
    RoiError when the file cannot be read at all.
    """
    try:
        return source.read_range(roi, start, width * height)
    except ImageMissing:
        raise ImageMissing(f"{roi.path}: image at byte {start} ({width}x{height}) passes the end of the file") from None
    except SourceUnreadable as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise RoiUnreadable(str(err), err.errno) from None
        raise RoiError(str(err)) from None
