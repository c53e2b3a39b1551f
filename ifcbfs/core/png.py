"""Deterministic PNG bytes (SPEC section 6): stored deflate blocks, so size depends only on W x H."""
from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BLOCK = 65535
_JOIN_LIMIT = 1 << 17  # pixels: smaller images are joined row by row, larger ones copied into place
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def png_size(width: int, height: int) -> int:
    """Exact size in bytes of the PNG of a width x height image, without its pixels."""
    raw = height * (width + 1)
    return 63 + raw + 5 * -(-raw // _BLOCK)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _scanlines(width: int, height: int, pixels: bytes) -> bytes | bytearray:
    """The raw PNG image data: each row preceded by filter byte 0."""
    view = memoryview(pixels)
    if width * height <= _JOIN_LIMIT:  # one join of the rows (a leading empty part gives the first 0)
        return b"\0".join([b"", *(view[at:at + width] for at in range(0, width * height, width))])
    stride = width + 1
    raw = bytearray(height * stride)
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
    crc = zlib.crc32(b"IDAT")
    for part in parts:
        crc = zlib.crc32(part, crc)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    size = sum(map(len, parts))  # the IDAT chunk is written from its parts: no copy of the image but the last
    return b"".join((SIGNATURE, _chunk(b"IHDR", ihdr), struct.pack(">I", size), b"IDAT", *parts,
                     struct.pack(">I", crc), _IEND))
