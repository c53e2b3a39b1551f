"""Positional reads of one image's bytes from a `.roi` file."""
from __future__ import annotations

import errno
import os

from .errors import ImageMissing, RoiError
from .source import SourceUnreadable


class RoiUnreadable(RoiError, SourceUnreadable):
    """The `.roi` file exists but this process may not read it: carries the errno (EACCES)."""


def _unreadable(path: str, err: OSError) -> RoiError:
    if err.errno in (errno.EACCES, errno.EPERM):
        return RoiUnreadable(f"{path}: {err.strerror}", err.errno)
    return RoiError(f"{path}: {err.strerror}")


def read_pixels(path: str, start: int, width: int, height: int) -> bytes:
    """The width*height bytes of one image at `start`, by one positional read.

    Raises ImageMissing when the file ends before the image does (truncated, or still being
    written), RoiUnreadable (a RoiError with an errno) when permissions forbid reading it, and
    RoiError when the file cannot be read at all.
    """
    size = width * height
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    except OSError as err:
        raise _unreadable(path, err) from None
    try:
        data = os.pread(fd, size, start)
        while len(data) < size:
            more = os.pread(fd, size - len(data), start + len(data))
            if not more:
                raise ImageMissing(f"{path}: image at byte {start} ({width}x{height}) passes the end of the file")
            data += more
        return data
    except OSError as err:
        raise _unreadable(path, err) from None
    finally:
        os.close(fd)
