"""Blob mask zips (`{bin}_blobs_vN.zip`, SPEC section 9) to `blobs/{bin}_{NNNNN}.png`.

Each member `{bin}_{NNNNN}.png` is one target's mask; its uncompressed bytes are the PNG, shown
unchanged. A stored member is a plain byte range of the zip (`offset`, `size`), so it can be
served by reading just that range; a deflated one is inflated from its range (`inflate`).
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Container, NamedTuple

from .errors import ProductError, one_line
from .ids import target_id

STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
_LOCAL = struct.Struct("<4s22xHH")  # signature, then the name and extra field lengths at 26 and 28
_MAX_MEMBER = 1 << 28  # a mask PNG is far smaller; bounds what one read may inflate


class BlobMember(NamedTuple):
    """Where one mask is in the zip: `offset` of its data, `stored_size` bytes there, `size`
    bytes once inflated (the PNG's size), its compression `method` and CRC-32."""

    target: int
    name: str
    offset: int
    stored_size: int
    size: int
    method: int
    crc: int


class Blobs(NamedTuple):
    """A blobs zip's masks by target number, and the log line for members left out (or None)."""

    members: dict[int, BlobMember]
    problem: str | None


def blob_members(data: bytes, bin_id: str, known_targets: Container[int] | None = None) -> Blobs:
    """The masks of a blobs zip, from its central directory and local headers.

    Members that are not `{bin}_{NNNNN}.png` of this bin, repeat a target, are encrypted,
    use a method other than stored or deflate, or lie outside the file are left out (named in
    `problem`); with `known_targets`, so are targets not in the ADC. A zip whose central
    directory cannot be read raises ProductError."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except Exception as err:  # BadZipFile mostly; struct, Unicode and other errors on damaged bytes
        raise ProductError(f"blobs zip: bad central directory ({one_line(err)})") from None
    members: dict[int, BlobMember] = {}
    junk: list[str] = []
    prefix = bin_id + "_"
    for info in infos:
        name = info.filename
        if info.is_dir() and not name.startswith(prefix):
            continue  # a folder entry holds no data
        stem = name[len(prefix):-4] if name.startswith(prefix) and name.endswith(".png") else ""
        target = int(stem) if stem.isascii() and stem.isdigit() else 0
        if target < 1 or target_id(bin_id, target) + ".png" != name:
            junk.append(f"{name[:60]!r} is not a mask of {bin_id}")
        elif target in members:
            junk.append(f"{name!r} repeated")
        elif known_targets is not None and target not in known_targets:
            junk.append(f"{name!r}: target not in the ADC")
        elif info.flag_bits & 1 or info.compress_type not in (STORED, DEFLATED):
            junk.append(f"{name!r} is encrypted or compressed with method {info.compress_type}")
        elif info.file_size > _MAX_MEMBER or (info.compress_type == STORED and info.compress_size != info.file_size):
            junk.append(f"{name!r} has impossible sizes")
        else:
            offset = _data_offset(data, info.header_offset)
            if offset is None or offset + info.compress_size > len(data):
                junk.append(f"{name!r} lies outside the file")
            else:
                members[target] = BlobMember(target, name, offset, info.compress_size, info.file_size,
                                             info.compress_type, info.CRC)
    problem = None
    if junk:
        problem = f"blobs zip: {len(junk)} members left out ({'; '.join(junk[:3])}{'; ...' if len(junk) > 3 else ''})"
    return Blobs(members, problem)


def _data_offset(data: bytes, header: int) -> int | None:
    """Where a member's data starts: after its local header, whose name and extra field lengths
    may differ from the central directory's."""
    if header < 0 or header + _LOCAL.size > len(data):
        return None
    signature, name_len, extra_len = _LOCAL.unpack_from(data, header)
    if signature != b"PK\x03\x04":
        return None
    return header + _LOCAL.size + name_len + extra_len


def inflate(member: BlobMember, raw: bytes) -> bytes:
    """A mask's PNG bytes from its raw range of the zip (`stored_size` bytes from `offset`).

    The size and CRC-32 are checked against the central directory: bytes that do not match
    raise ProductError, never come out wrong."""
    if len(raw) != member.stored_size:
        raise ProductError(f"blobs zip: {member.name}: {len(raw)} bytes read of {member.stored_size}")
    if member.method == STORED:
        out = raw
    else:
        try:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = inflater.decompress(raw, member.size + 1)
        except zlib.error as err:
            raise ProductError(f"blobs zip: {member.name}: bad deflate data ({err})") from None
    if len(out) != member.size or zlib.crc32(out) != member.crc:
        raise ProductError(f"blobs zip: {member.name}: size or CRC does not match the directory")
    return out


def blob_bytes(data: bytes, member: BlobMember) -> bytes:
    """A mask's PNG bytes, given the whole zip."""
    return inflate(member, data[member.offset:member.offset + member.stored_size])
