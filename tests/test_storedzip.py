"""Stored zips: exact size from names and sizes, bytes by range, read back by zipfile and unzip."""
import io
import shutil
import struct
import subprocess
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.errors import ImageMissing
from ifcbfs.core.storedzip import CrcTable, Member, StoredZip, dos_datetime, zip_size

MTIME = 1369561927  # 2013-05-26T09:52:07Z
LIMIT32, LIMIT16 = 0xFFFFFFFF, 0xFFFF
EXACT = settings(max_examples=60, deadline=None, database=None, derandomize=True)


def members_of(contents: dict[str, bytes], calls: list | None = None) -> list[Member]:
    """Members whose data callables record their calls in `calls`."""
    def producer(name, data):
        def produce():
            if calls is not None:
                calls.append(name)
            return data
        return produce
    return [Member(name, len(data), producer(name, data)) for name, data in contents.items()]


def sample(n: int = 5) -> dict[str, bytes]:
    return {f"D20130526T095207_IFCB013_{i:05d}.png": bytes((i * 37 + k) & 0xFF for k in range(i * 301))
            for i in range(n)}


class RangeFile(io.RawIOBase):
    """A read-only file whose bytes come from StoredZip.read, for zipfile to parse."""

    def __init__(self, z: StoredZip, crcs: dict | None = None):
        self.z, self.crcs, self.at = z, {} if crcs is None else crcs, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self.at = {0: offset, 1: self.at + offset, 2: self.z.size + offset}[whence]
        return self.at

    def tell(self):
        return self.at

    def readinto(self, buf):
        data = self.z.read(self.at, len(buf), self.crcs)
        buf[:len(data)] = data
        self.at += len(data)
        return len(data)


def unzip_test(path) -> str:
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed (apt-get install unzip)")
    done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_round_trip_through_zipfile_and_unzip(tmp_path):
    contents = {"metadata.json": b'{"lid": "x"}', "empty.csv": b"", **sample(6)}
    z = StoredZip(members_of(contents), MTIME)
    data = z.read(0, z.size)
    assert len(data) == z.size == zip_size([(name, len(d)) for name, d in contents.items()])
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    assert zf.namelist() == list(contents)
    for info in zf.infolist():
        assert zf.read(info) == contents[info.filename]
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.flag_bits & 0x08  # CRC and sizes in a data descriptor
        assert info.date_time == (2013, 5, 26, 9, 52, 6)  # DOS time keeps even seconds
        assert info.external_attr >> 16 == 0o100644
    path = tmp_path / "bin.zip"
    path.write_bytes(data)
    out = unzip_test(path)
    assert out.count(" OK") == len(contents)
    # unzip restores the exact time from the extended-timestamp field
    subprocess.run(["unzip", "-q", str(path), "metadata.json", "-d", str(tmp_path / "x")], check=True)
    assert (tmp_path / "x" / "metadata.json").stat().st_mtime == MTIME


def test_local_headers_hold_no_crc_and_are_fixed_by_name_and_size():
    z = StoredZip(members_of(sample(3)), MTIME)
    for i, m in enumerate(z.members):
        header = z.local_header(i)
        sig, _, flags, method, _, _, crc, csize, usize, nlen, xlen = struct.unpack("<IHHHHHIIIHH", header[:30])
        assert (sig, flags, method, crc, csize, usize) == (0x04034B50, 0x08, 0, 0, 0, 0)
        assert header[30:30 + nlen] == m.name.encode()


def test_bytes_are_deterministic():
    a = StoredZip(members_of(sample()), MTIME)
    b = StoredZip(members_of(sample()), MTIME)
    assert a.read(0, a.size) == b.read(0, b.size) == a.read(0, a.size)
    c = StoredZip(members_of(sample()), MTIME + 2)
    assert c.size == a.size and c.read(0, c.size) != a.read(0, a.size)


@EXACT
@given(st.data())
def test_ranged_reads_are_slices_of_the_whole(data):
    contents = sample(data.draw(st.integers(0, 6)))
    z = StoredZip(members_of(contents), MTIME)
    whole = z.read(0, z.size)
    crcs = data.draw(st.sampled_from([None, {}]))
    for _ in range(20):
        offset = data.draw(st.integers(-5, z.size + 5))
        length = data.draw(st.integers(0, z.size + 10))
        assert z.read(offset, length, crcs) == whole[max(offset, 0):max(offset + length, 0)][:length]


def test_every_boundary_as_a_range():
    z = StoredZip(members_of(sample(4)), MTIME)
    whole = z.read(0, z.size)
    cuts = sorted(set(z._local + z._central + [z.size]))
    for at in cuts:
        for d in (-1, 0, 1):
            for length in (1, 2, 17):
                start = min(max(at + d, 0), z.size)
                assert z.read(start, length) == whole[start:start + length]


def test_a_range_produces_only_the_members_it_overlaps():
    calls = []
    contents = sample(5)
    z = StoredZip(members_of(contents, calls), MTIME)
    names = list(contents)
    second = z._local[2]  # inside member 2's local header: no data needed
    assert z.read(second, 10) and calls == []
    data_at = z._local[2] + len(z.local_header(2))
    assert z.read(data_at + 5, 20) == contents[names[2]][5:25]
    assert calls == [names[2]]


def test_central_directory_needs_every_crc_and_the_cache_keeps_them():
    calls = []
    contents = sample(5)
    z = StoredZip(members_of(contents, calls), MTIME)
    crcs = {}
    tail = z.read(z.cd_offset, z.size, crcs)
    assert sorted(calls) == sorted(contents)  # each member's bytes produced once, for its CRC
    assert crcs == {i: zlib.crc32(d) for i, d in enumerate(contents.values())}
    calls.clear()
    assert z.read(z.cd_offset, z.size, crcs) == tail and calls == []
    assert z.read(0, z._local[1], crcs) and calls == [list(contents)[0]]  # data itself is read


def test_a_crc_table_keeps_what_a_dict_would():
    calls = []
    contents = sample(5)
    z = StoredZip(members_of(contents, calls), MTIME)
    crcs = CrcTable(len(z.members))
    assert len(crcs) == 0 and 0 not in crcs and 5 not in crcs and "x" not in crcs
    assert z.read(0, z.size, crcs) == z.read(0, z.size)
    assert dict(crcs) == {i: zlib.crc32(d) for i, d in enumerate(contents.values())}
    calls.clear()
    assert z.read(z.cd_offset, z.size, crcs) and calls == []
    del crcs[2]
    assert 2 not in crcs and len(crcs) == 4 and list(crcs) == [0, 1, 3, 4]
    with pytest.raises(KeyError):
        crcs[2]
    crcs[2] = 0  # a CRC of 0 is a CRC
    assert crcs[2] == 0 and 2 in crcs


def test_a_member_that_changed_size_is_an_error_not_wrong_bytes():
    z = StoredZip([Member("a", 3, lambda: b"abcd")], MTIME)
    with pytest.raises(ImageMissing):
        z.read(0, z.size)
    assert z.read(0, 30) == z.local_header(0)[:30]  # what needs no member bytes still reads


def test_dos_time_is_utc_and_clamped():
    assert dos_datetime(MTIME) == ((9 << 11) | (52 << 5) | 3, (33 << 9) | (5 << 5) | 26)
    assert dos_datetime(0) == (0, (1 << 5) | 1)  # before 1980: 1980-01-01 00:00:00
    assert dos_datetime(2**40) == ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31)


# --- exact size across the ZIP64 boundaries (by arithmetic, then by structure) --------------

def plain(name_len: int, size: int) -> int:
    """Local header + UT field + data + 16-byte descriptor, plus the central entry."""
    return (30 + name_len + 9 + size + 16) + (46 + name_len + 9)


def test_size_formula_without_zip64():
    assert zip_size([]) == 22
    assert zip_size([("a", 0)]) == plain(1, 0) + 22
    assert zip_size([("ab", 1000), ("c", 5)]) == plain(2, 1000) + plain(1, 5) + 22


def test_size_formula_for_a_member_of_4_gib():
    # local: ZIP64 extra (20); descriptor with 8-byte sizes (+8); central extra with both sizes (20)
    big = plain(1, LIMIT32) + 20 + 8 + 20
    # the central directory starts beyond 4 GiB: ZIP64 end record and locator (76)
    assert zip_size([("a", LIMIT32)]) == big + 22 + 76


def test_size_formula_for_offsets_beyond_4_gib():
    first = LIMIT32 - (30 + 1 + 9 + 16)  # member "a" then ends exactly at offset 0xFFFFFFFF
    # the directory starts at 0xFFFFFFFF, which needs the ZIP64 end record and locator (76)
    assert zip_size([("a", first)]) == plain(1, first) + 22 + 76
    assert zip_size([("a", first - 1)]) == plain(1, first - 1) + 22
    # member "b" starts at 0xFFFFFFFF: its central entry gets an 8-byte offset (+12)
    assert zip_size([("a", first), ("b", 1)]) == plain(1, first) + plain(1, 1) + 12 + 22 + 76
    # one byte less and it starts at 0xFFFFFFFE: a 32-bit offset still holds it
    assert zip_size([("a", first - 1), ("b", 1)]) == plain(1, first - 1) + plain(1, 1) + 22 + 76


def test_size_formula_for_many_members():
    assert zip_size([("a", 0)] * (LIMIT16 - 1)) == (LIMIT16 - 1) * plain(1, 0) + 22
    assert zip_size([("a", 0)] * LIMIT16) == LIMIT16 * plain(1, 0) + 22 + 76


def test_size_function_agrees_with_the_bytes_at_every_boundary():
    never = lambda: pytest.fail("no member bytes are needed for sizes")  # noqa: E731
    first = LIMIT32 - (30 + 1 + 9 + 16)
    for entries in ([("a", LIMIT32 - 1)], [("a", LIMIT32)], [("a", first), ("b", 1)],
                    [("a", first - 1), ("b", 1)], [("a", 5 * 2**30), ("b", 3)]):
        z = StoredZip([Member(n, s, never) for n, s in entries], MTIME)
        assert z.size == zip_size(entries)


def test_zip64_offsets_and_sizes_read_back_by_zipfile():
    """A 5 GiB member (never produced: its CRC comes from the cache) and a small one after it."""
    huge = 5 * 2**30
    small = b"after the big one"
    z = StoredZip([Member("a.txt", 3, lambda: b"abc"),
                   Member("huge.bin", huge, lambda: pytest.fail("huge member produced")),
                   Member("b.txt", len(small), lambda: small)], MTIME)
    crcs = {1: 0x1234ABCD}
    zf = zipfile.ZipFile(RangeFile(z, crcs))
    infos = zf.infolist()
    assert [i.filename for i in infos] == ["a.txt", "huge.bin", "b.txt"]
    assert infos[1].file_size == infos[1].compress_size == huge and infos[1].CRC == 0x1234ABCD
    assert infos[2].header_offset == z._local[2] > LIMIT32
    assert zf.read("b.txt") == small and zf.read("a.txt") == b"abc"
    assert z.size == zip_size([(m.name, m.size) for m in z.members])
    # the huge member's local header: ZIP64 extra field, version 4.5
    header = z.local_header(1)
    assert struct.unpack("<H", header[4:6])[0] == 45 and header[38:40] == b"\x01\x00"
    assert struct.unpack("<II", header[18:26]) == (LIMIT32, LIMIT32)


def test_many_members_round_trip_with_zip64_end_records(tmp_path):
    n = LIMIT16 + 1
    contents = {f"{i:05d}": bytes([i & 0xFF]) for i in range(n)}
    z = StoredZip(members_of(contents), MTIME)
    data = z.read(0, z.size)
    assert len(data) == z.size == zip_size([(k, 1) for k in contents])
    assert data[-22:-20] == b"PK" and data[-98:-94] == b"PK\x06\x06"  # ZIP64 end record present
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert len(zf.infolist()) == n and zf.testzip() is None
    assert zf.read("65535") == b"\xff"
    path = tmp_path / "many.zip"
    path.write_bytes(data)
    assert "No errors detected" in unzip_test(path)


def test_fewer_members_have_no_zip64_records():
    data = StoredZip(members_of(sample(3)), MTIME)
    whole = data.read(0, data.size)
    assert b"PK\x06\x06" not in whole and b"PK\x06\x07" not in whole
