"""Deterministic PNG bytes (SPEC section 6): stored deflate blocks, so size depends only on W x H."""
from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BLOCK = 65535
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def png_size(width: int, height: int) -> int:
    """Exact size in bytes of the PNG of a width x height image, without its pixels."""
    raw = height * (width + 1)
    return 63 + raw + 5 * -(-raw // _BLOCK)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _scanlines(width: int, height: int, pixels: bytes) -> bytearray:
    """The raw PNG image data: each row preceded by filter byte 0."""
    stride = width + 1
    raw = bytearray(height * stride)
    view = memoryview(pixels)
    for row in range(height):
        at = row * stride + 1
        raw[at:at + width] = view[row * width:(row + 1) * width]
    return raw


def encode_png(width: int, height: int, pixels: bytes) -> bytes:
    """8-bit grayscale PNG of `pixels` (height rows of width bytes), a pure function of its input."""
    if width <= 0 or height <= 0 or len(pixels) != width * height:
        raise ValueError(f"{len(pixels)} bytes are not a {width}x{height} image")
    raw = _scanlines(width, height, pixels)
    n = len(raw)
    parts = [b"\x78\x01"]
    view = memoryview(raw)
    for at in range(0, n, _BLOCK):
        block = view[at:at + _BLOCK]
        last = 1 if at + _BLOCK >= n else 0
        parts.append(struct.pack("<BHH", last, len(block), 0xFFFF ^ len(block)))
        parts.append(block)
    parts.append(struct.pack(">I", zlib.adler32(raw)))
    idat = b"".join(parts)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join((SIGNATURE, _chunk(b"IHDR", ihdr), _chunk(b"IDAT", idat), _IEND))
