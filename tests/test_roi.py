"""Positional reads of one image's bytes from a .roi file (SPEC section 4)."""
import os
import time

import pytest

from ifcbfs.core.errors import BinError, ImageMissing, RoiError
from ifcbfs.core import roi as roi_mod
from ifcbfs.core.local import LocalSource
from ifcbfs.core.source import SourceFile


def read_pixels(path, start, width, height):
    """One image's bytes from the .roi file at `path`, through the local source."""
    return roi_mod.read_pixels(LocalSource(os.path.dirname(path)), SourceFile(path, 0, 0), start, width, height)


@pytest.fixture
def roi_file(tmp_path):
    """Stray bytes, a 4x3 image at 5, a 2x2 image right after it, stray bytes at the end."""
    path = tmp_path / "D20130526T095207_IFCB013.roi"
    path.write_bytes(b"\xee" * 5 + bytes(range(12)) + b"\x10\x20\x30\x40" + b"\xff" * 3)
    return str(path)


def test_reads_exactly_w_times_h_bytes_at_the_start_byte(roi_file):
    assert read_pixels(roi_file, 5, 4, 3) == bytes(range(12))
    assert read_pixels(roi_file, 17, 2, 2) == b"\x10\x20\x30\x40"
    assert read_pixels(roi_file, 0, 1, 1) == b"\xee"
    assert read_pixels(roi_file, 21, 3, 1) == b"\xff\xff\xff"   # ends exactly at the end of the file


def test_one_positional_read_of_exactly_the_image(roi_file, monkeypatch):
    calls = []
    real_pread = os.pread

    def pread(fd, n, offset):
        calls.append((n, offset))
        return real_pread(fd, n, offset)

    def no_read(*args):
        raise AssertionError("read_pixels must not use os.read")

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "read", no_read)
    assert read_pixels(roi_file, 5, 4, 3) == bytes(range(12))
    assert calls == [(12, 5)]


def test_short_positional_reads_are_continued(roi_file, monkeypatch):
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: real_pread(fd, min(n, 5), offset))
    assert read_pixels(roi_file, 5, 4, 3) == bytes(range(12))


def test_one_small_image_from_a_sparse_2_gb_file_is_read_quickly(tmp_path):
    path = tmp_path / "big.roi"
    start = (1 << 31) + 12345      # past 2**31: offsets beyond 32 bits
    with open(path, "wb") as f:
        f.seek(start)
        f.write(bytes(range(200)) * 3)
        f.truncate(start + 1_000_000)
    assert os.path.getsize(path) > 2 * 1024 ** 3
    t0 = time.perf_counter()
    assert read_pixels(str(path), start, 30, 20) == (bytes(range(200)) * 3)[:600]
    assert read_pixels(str(path), 1000, 10, 10) == bytes(100)   # a hole reads as zeros
    assert time.perf_counter() - t0 < 1.0   # reading the whole file would take far longer


@pytest.mark.parametrize("start, w, h", [
    (22, 3, 1),        # one byte past the end
    (21, 2, 2),
    (24, 1, 1),        # starts at the end
    (10 ** 6, 1, 1),   # far past the end
])
def test_image_past_the_end_of_the_file_is_missing(roi_file, start, w, h):
    with pytest.raises(ImageMissing, match="passes the end"):
        read_pixels(roi_file, start, w, h)


def test_missing_or_unreadable_file_is_a_roi_error(tmp_path):
    with pytest.raises(RoiError) as info:
        read_pixels(str(tmp_path / "absent.roi"), 0, 1, 1)
    assert not isinstance(info.value, ImageMissing)
    assert "absent.roi" in str(info.value)
    with pytest.raises(RoiError):
        read_pixels(str(tmp_path), 0, 1, 1)   # a folder
    assert issubclass(RoiError, BinError) and issubclass(ImageMissing, RoiError)


def test_no_file_descriptor_is_left_open(roi_file):
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(50):
        read_pixels(roi_file, 5, 4, 3)
        with pytest.raises(ImageMissing):
            read_pixels(roi_file, 100, 1, 1)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds
