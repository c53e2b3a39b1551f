"""Positional reads of one image's bytes from a `.roi` file."""
from __future__ import annotations

import os

from .errors import ImageMissing, RoiError


def read_pixels(path: str, start: int, width: int, height: int) -> bytes:
    """The width*height bytes of one image at `start`, by one positional read.

    Raises ImageMissing when the file ends before the image does (truncated, or still being
    written) and RoiError when the file cannot be read at all.
    """
    size = width * height
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise RoiError(f"{path}: {err.strerror}") from None
    try:
        data = os.pread(fd, size, start)
        while len(data) < size:
            more = os.pread(fd, size - len(data), start + len(data))
            if not more:
                raise ImageMissing(f"{path}: image at byte {start} ({width}x{height}) passes the end of the file")
            data += more
        return data
    except OSError as err:
        raise RoiError(f"{path}: {err.strerror}") from None
    finally:
        os.close(fd)
