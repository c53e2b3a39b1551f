"""Deterministic PNG bytes (SPEC section 6): layout, size from W x H, decoders and pngcheck agree."""
import hashlib
import io
import os
import shutil
import struct
import subprocess
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ifcbfs.core.png import encode_png, png_size

SIZES = [
    (1, 1), (2, 1), (1, 2), (7, 5), (255, 1), (1, 255),
    (65534, 1),   # one row of exactly 65535 raw bytes: one block
    (65535, 1),   # one byte over: two blocks
    (254, 257),   # 255 * 257 = 65535 raw bytes
    (255, 256),   # 256 * 256 = 65536: two blocks
    (1, 32768),   # 2 * 32768 = 65536
    (1000, 200),  # 200200 raw bytes: four blocks
    (1380, 1034), # a whole camera frame
    (96, 45), (263, 86),
]


def pixels_for(w: int, h: int, salt: int = 0) -> bytes:
    return bytes((x * 7 + y * 13 + salt) & 0xFF for y in range(h) for x in range(w))


def parse_png(data: bytes) -> tuple[int, int, bytes]:
    """Check the exact layout the SPEC prescribes and return (width, height, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        (crc,) = struct.unpack(">I", data[at + 8 + n:at + 12 + n])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + n
    assert at == len(data)
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 0, 0, 0, 0)
    assert chunks[2][1] == b""
    idat = chunks[1][1]
    assert idat[:2] == b"\x78\x01"
    raw, at = bytearray(), 2
    while True:     # stored deflate blocks, each at most 65535 bytes, only the last one final
        header = idat[at]
        length, nlength = struct.unpack("<HH", idat[at + 1:at + 5])
        assert header in (0, 1) and length ^ 0xFFFF == nlength and 0 < length <= 65535
        raw += idat[at + 5:at + 5 + length]
        at += 5 + length
        if header == 1:
            break
        assert length == 65535
    assert idat[at:] == struct.pack(">I", zlib.adler32(bytes(raw)))
    assert bytes(raw) == zlib.decompress(idat)
    assert len(raw) == h * (w + 1)
    rows = [raw[r * (w + 1):(r + 1) * (w + 1)] for r in range(h)]
    assert all(row[0] == 0 for row in rows)   # filter byte 0 on every row
    return w, h, b"".join(bytes(row[1:]) for row in rows)


def decoded_by_pillow(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "L" and im.format == "PNG"
        im.load()
        return im.size, im.tobytes()


def test_a_1x1_image_is_exactly_these_70_bytes():
    assert png_size(1, 1) == 70
    assert encode_png(1, 1, b"\x80") == bytes.fromhex(
        "89504e470d0a1a0a"
        "0000000d49484452" "00000001" "00000001" "0800000000" "3a7e9b55"
        "0000000d49444154" "7801" "010200fdff" "0080" "00820081" "c36e25e0"
        "0000000049454e44ae426082")


def test_output_is_a_fixed_pure_function_of_the_pixels():
    # these hashes never change: not with zlib, Pillow, Python or the machine
    small = bytes((x * 37 + y * 11) % 256 for y in range(5) for x in range(7))
    assert hashlib.sha256(encode_png(7, 5, small)).hexdigest() == \
        "0b4a20e61cf48716a79d5ebbf6495878e01db853de8601381ffe7bdabc63ce6d"
    multi_block = bytes((x * x + 3 * y) % 256 for y in range(250) for x in range(300))
    assert hashlib.sha256(encode_png(300, 250, multi_block)).hexdigest() == \
        "970ac78e6b1901aa520b77279a1e0e7212fae1309d8ea13fd7bfe446ffc0265c"
    assert encode_png(300, 250, multi_block) == encode_png(300, 250, bytearray(multi_block))


def test_size_formula():
    for w, h in SIZES:
        raw = h * (w + 1)
        assert png_size(w, h) == 63 + raw + 5 * -(-raw // 65535)
    assert png_size(65534, 1) == 63 + 65535 + 5
    assert png_size(65535, 1) == 63 + 65536 + 10


@pytest.mark.parametrize("w, h", SIZES)
def test_size_layout_and_pillow_agree(w, h):
    pixels = pixels_for(w, h)
    data = encode_png(w, h, pixels)
    assert len(data) == png_size(w, h)
    assert parse_png(data) == (w, h, pixels)
    assert decoded_by_pillow(data) == ((w, h), pixels)


def test_many_sizes_match_png_size():
    for w in list(range(1, 40)) + [100, 255, 256, 257, 1023, 4096]:
        for h in (1, 2, 3, 17, 64, 255, 256, 257):
            assert png_size(w, h) == len(encode_png(w, h, bytes(w * h))), (w, h)


@pytest.mark.parametrize("w, h, pixels", [(0, 1, b""), (1, 0, b""), (2, 2, b"abc"), (2, 2, b"abcde"), (-1, -1, b"a")])
def test_bad_input_is_refused(w, h, pixels):
    with pytest.raises(ValueError):
        encode_png(w, h, pixels)


def test_pngcheck_accepts_the_output(tmp_path):
    tool = shutil.which("pngcheck")
    if tool is None:
        message = "pngcheck is not installed (apt-get install pngcheck)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    paths = []
    for i, (w, h) in enumerate(SIZES + [(3, 3), (100, 700)]):
        path = tmp_path / f"{i}_{w}x{h}.png"
        path.write_bytes(encode_png(w, h, pixels_for(w, h, i)))
        paths.append(str(path))
    done = subprocess.run([tool, "-q", *paths], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda w: st.integers(1, 40).flatmap(
    lambda h: st.tuples(st.just(w), st.just(h), st.binary(min_size=w * h, max_size=w * h)))))
def test_png_writer_property(case):
    w, h, pixels = case
    data = encode_png(w, h, pixels)
    assert len(data) == png_size(w, h)
    assert parse_png(data) == (w, h, pixels)
    assert decoded_by_pillow(data) == ((w, h), pixels)
    assert encode_png(w, h, pixels) == data
