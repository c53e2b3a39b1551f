"""A zip archive of stored members whose size is known from names and sizes, and whose bytes are
produced by range, member by member.

Layout, for each member in order: local header, the member's bytes, data descriptor; then the
central directory and the end records. General-purpose bit 3 is set, so the local headers hold
no CRC and no sizes: they, and every offset, follow from names and sizes alone. The CRCs go in
the data descriptors and the central directory; producing those bytes needs the member's CRC,
which the caller may keep between reads (`crcs`).

Choices, so that the bytes are a pure function of (names, sizes, contents, mtime):
- Every member has the same time: `mtime` (seconds since the epoch, UTC) as a DOS date and time
  read in UTC (clamped to 1980-01-01 .. 2107-12-31), and again exactly in an extended-timestamp
  extra field (0x5455, clamped to 0 .. 2**31-1), so `unzip` restores it whatever the local zone.
- Version made by Unix, external attributes 0o100644 (a regular file, rw-r--r--).
- ZIP64 only where a field overflows: a member of 0xFFFFFFFF bytes or more gets a ZIP64 local
  extra field and an 8-byte-size data descriptor; a central entry gets a ZIP64 extra field for
  each of its size and offset that overflows; 0xFFFF or more members, or a central directory
  whose size or offset reaches 0xFFFFFFFF, add the ZIP64 end record and locator.
"""
from __future__ import annotations

import bisect
import calendar
from array import array
import math
import struct
import time
import zlib
from typing import Callable, Iterable, Iterator, MutableMapping, NamedTuple, Sequence

from .errors import ImageMissing

_LIMIT32 = 0xFFFFFFFF  # this value, or more, does not fit a 32-bit field (it is the ZIP64 marker)
_LIMIT16 = 0xFFFF
_LOCAL, _CENTRAL, _DESCRIPTOR = 30, 46, 16
_DESCRIPTOR64 = 24
_LOCAL_ZIP64 = 20  # header id, size, then both sizes (zero under bit 3)
_EXTTIME = 9  # header id, size, flags, mtime: the same length in local and central headers
_END, _END64, _LOCATOR64 = 22, 56, 20
_FLAGS = 0x0008  # bit 3: CRC and sizes in a data descriptor
_UTF8 = 0x0800  # bit 11: the name is UTF-8
_ATTRIBUTES = 0o100644 << 16
_DOS_FIRST = calendar.timegm((1980, 1, 1, 0, 0, 0))
_DOS_LAST = calendar.timegm((2107, 12, 31, 23, 59, 58))


class Member(NamedTuple):
    """One member: its name, its exact size, and a callable that returns its bytes."""

    name: str
    size: int
    data: Callable[[], bytes]


class CrcTable(MutableMapping):
    """Member index -> CRC-32 for `StoredZip.read`, in 8 bytes a member: kept as long as the zip is
    served, so its central directory is computed once."""

    def __init__(self, count: int):
        self._crcs = array("q", [-1]) * count

    def __getitem__(self, index: int) -> int:
        crc = self._crcs[index]
        if crc < 0:
            raise KeyError(index)
        return crc

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < len(self._crcs) and self._crcs[index] >= 0

    def __setitem__(self, index: int, crc: int) -> None:
        self._crcs[index] = crc

    def __delitem__(self, index: int) -> None:
        self._crcs[index] = -1

    def __iter__(self) -> Iterator[int]:
        return (index for index, crc in enumerate(self._crcs) if crc >= 0)

    def __len__(self) -> int:
        return sum(1 for crc in self._crcs if crc >= 0)


def _name(name: str) -> bytes:
    return name.encode("utf-8")


def _big(size: int) -> bool:
    """Whether a member of this size needs ZIP64 sizes."""
    return size >= _LIMIT32


def _local_size(name_len: int, size: int) -> int:
    """Local header + data + data descriptor of one member."""
    if _big(size):
        return _LOCAL + name_len + _LOCAL_ZIP64 + _EXTTIME + size + _DESCRIPTOR64
    return _LOCAL + name_len + _EXTTIME + size + _DESCRIPTOR


def _central_extra(size: int, offset: int) -> int:
    """Length of a central entry's ZIP64 extra field (0 when nothing overflows)."""
    fields = 2 * _big(size) + (offset >= _LIMIT32)
    return 4 + 8 * fields if fields else 0


def _central_size(name_len: int, size: int, offset: int) -> int:
    return _CENTRAL + name_len + _EXTTIME + _central_extra(size, offset)


def _needs_end64(count: int, cd_size: int, cd_offset: int) -> bool:
    return count >= _LIMIT16 or cd_size >= _LIMIT32 or cd_offset >= _LIMIT32


def zip_size(members: Iterable[Sequence]) -> int:
    """Exact size of the zip of members given as (name, size, ...), without their bytes."""
    offset = cd_size = count = 0
    for member in members:
        name_len, size = len(_name(member[0])), member[1]
        cd_size += _central_size(name_len, size, offset)
        offset += _local_size(name_len, size)
        count += 1
    end = _END + (_END64 + _LOCATOR64 if _needs_end64(count, cd_size, offset) else 0)
    return offset + cd_size + end


def dos_datetime(mtime: float) -> tuple[int, int]:
    """(DOS time, DOS date) of a Unix time read in UTC, clamped to the DOS range."""
    seconds = min(max(math.floor(mtime), _DOS_FIRST), _DOS_LAST)
    t = time.gmtime(seconds)
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


def _cut(out: bytearray, piece: bytes, at: int, start: int, end: int) -> None:
    """Append the part of `piece` (which starts at offset `at`) that lies in [start, end)."""
    low, high = max(start - at, 0), min(end - at, len(piece))
    if high > low:
        out += piece[low:high]


class StoredZip:
    """The bytes of a zip of stored members: its size from names and sizes, its bytes by range."""

    def __init__(self, members: Sequence[Member], mtime: float):
        self.members = tuple(members)
        self._names = [_name(m.name) for m in self.members]
        self._time, self._date = dos_datetime(mtime)
        self._unix = min(max(math.floor(mtime), 0), 2**31 - 1)
        local = [0]  # where each member's local header starts; then the central directory's start
        central = []  # where each member's central entry starts
        cd_at = 0
        for name, member in zip(self._names, self.members):
            if member.size < 0:
                raise ValueError(f"{member.name}: negative size {member.size}")
            central.append(cd_at)
            cd_at += _central_size(len(name), member.size, local[-1])
            local.append(local[-1] + _local_size(len(name), member.size))
        self._local = local
        self.cd_offset = local[-1]
        self._central = [self.cd_offset + c for c in central] + [self.cd_offset + cd_at]
        self.cd_size = cd_at
        self._end = self._end_records()
        self.size = self.cd_offset + cd_at + len(self._end)

    # --- the pieces ---------------------------------------------------------------------------
    def _flags(self, index: int) -> int:
        return _FLAGS | (0 if self.members[index].name.isascii() else _UTF8)

    def _exttime(self) -> bytes:
        return struct.pack("<HHBI", 0x5455, 5, 1, self._unix)

    def local_header(self, index: int) -> bytes:
        """The local header of a member: static, as bit 3 leaves CRC and sizes to the descriptor."""
        name, size = self._names[index], self.members[index].size
        version = 45 if _big(size) or self._local[index] >= _LIMIT32 else 20
        if _big(size):
            sizes, extra = _LIMIT32, struct.pack("<HHQQ", 0x0001, 16, 0, 0) + self._exttime()
        else:
            sizes, extra = 0, self._exttime()
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, version, self._flags(index), 0, self._time,
                           self._date, 0, sizes, sizes, len(name), len(extra)) + name + extra

    def _descriptor(self, index: int, crc: int) -> bytes:
        size = self.members[index].size
        fmt = "<IIQQ" if _big(size) else "<IIII"
        return struct.pack(fmt, 0x08074B50, crc, size, size)

    def _central_entry(self, index: int, crc: int) -> bytes:
        name, size, offset = self._names[index], self.members[index].size, self._local[index]
        wide = []
        if _big(size):
            wide += [size, size]
        if offset >= _LIMIT32:
            wide.append(offset)
        extra = struct.pack(f"<HH{len(wide)}Q", 0x0001, 8 * len(wide), *wide) if wide else b""
        extra += self._exttime()
        version = 45 if wide else 20
        return struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0300 | version, version, self._flags(index), 0,
            self._time, self._date, crc, min(size, _LIMIT32), min(size, _LIMIT32), len(name),
            len(extra), 0, 0, 0, _ATTRIBUTES, min(offset, _LIMIT32)) + name + extra

    def _end_records(self) -> bytes:
        count, cd_size, cd_offset = len(self.members), self.cd_size, self.cd_offset
        end = b""
        if _needs_end64(count, cd_size, cd_offset):
            end64_at = cd_offset + cd_size
            end = struct.pack("<IQHHIIQQQQ", 0x06064B50, _END64 - 12, 0x0300 | 45, 45, 0, 0,
                              count, count, cd_size, cd_offset)
            end += struct.pack("<IIQI", 0x07064B50, 0, end64_at, 1)
        short = min(count, _LIMIT16)
        return end + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, short, short,
                                 min(cd_size, _LIMIT32), min(cd_offset, _LIMIT32), 0)

    # --- bytes on demand ----------------------------------------------------------------------
    def _data(self, index: int, crcs: MutableMapping[int, int]) -> bytes:
        member = self.members[index]
        data = member.data()
        if len(data) != member.size:
            raise ImageMissing(f"{member.name}: {len(data)} bytes, but {member.size} were listed")
        crcs[index] = zlib.crc32(data)
        return data

    def crc(self, index: int, crcs: MutableMapping[int, int] | None = None) -> int:
        """CRC-32 of a member: from `crcs` when there, else by producing its bytes (and kept)."""
        crcs = {} if crcs is None else crcs
        if index not in crcs:
            self._data(index, crcs)
        return crcs[index]

    def read(self, offset: int, length: int, crcs: MutableMapping[int, int] | None = None) -> bytes:
        """Bytes [offset, offset+length) of the zip (fewer at its end).

        Produces only the members whose bytes overlap the range, plus the CRCs that the data
        descriptors and central entries in the range need; `crcs` (member index -> CRC-32)
        keeps those between calls. Raises ImageMissing if a member no longer has its listed size.
        """
        crcs = {} if crcs is None else crcs
        start, end = max(offset, 0), min(offset + max(length, 0), self.size)
        out = bytearray()
        if start >= end:
            return b""
        index = bisect.bisect_right(self._local, start) - 1
        while index < len(self.members) and self._local[index] < end:
            header = self.local_header(index)
            at = self._local[index]
            _cut(out, header, at, start, end)
            data_at = at + len(header)
            descriptor_at = data_at + self.members[index].size
            if data_at < end and descriptor_at > start:
                _cut(out, self._data(index, crcs), data_at, start, end)
            if descriptor_at < end and self._local[index + 1] > start:
                _cut(out, self._descriptor(index, self.crc(index, crcs)), descriptor_at, start, end)
            index += 1
        index = max(bisect.bisect_right(self._central, start) - 1, 0)
        while index < len(self.members) and self._central[index] < end:
            if self._central[index + 1] > start:
                entry = self._central_entry(index, self.crc(index, crcs))
                _cut(out, entry, self._central[index], start, end)
            index += 1
        _cut(out, self._end, self._central[-1], start, end)
        return bytes(out)
