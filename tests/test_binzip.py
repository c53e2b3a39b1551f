"""The dashboard zip of a bin (SPEC section 11): members, their bytes, and real bins read back."""
import csv
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import ifcbfs
from ifcbfs.core.adc import parse_adc
from ifcbfs.core.binzip import (
    METADATA, adc_csv, adc_csv_size, bin_zip, headers_json, members, metadata_json,
)
from ifcbfs.core.ids import parse_bin_id
from ifcbfs.core.png import png_size
from ifcbfs.core.storedzip import zip_size

D_BIN, I_BIN = parse_bin_id("D20130526T095207_IFCB013"), parse_bin_id("IFCB5_2012_028_081515")


def test_metadata_json():
    assert metadata_json(D_BIN) == (b'{"lid": "D20130526T095207_IFCB013", "schema": 2, '
                                    b'"timestamp": "2013-05-26T09:52:07Z"}')
    assert json.loads(metadata_json(I_BIN)) == {
        "lid": "IFCB5_2012_028_081515", "schema": 1, "timestamp": "2012-01-28T08:15:15Z"}


def test_headers_json_is_one_line_of_ascii():
    header = {"context": "IFCB013 caf\u00e9", "runTime": 1200.5, "triggerMode": 1, "sampleFlag": True}
    data = headers_json(header)
    assert data == (b'{"context": "IFCB013 caf\\u00e9", "runTime": 1200.5, "triggerMode": 1, '
                    b'"sampleFlag": true}')
    assert json.loads(data) == header
    assert headers_json({}) == b"{}"


def test_adc_csv_is_the_adc_fields_without_header_or_roi_number():
    raw = (b"1,0.5,0,0,0,0,0,0,0,10,20,30,40,0,0,\r\n"   # trailing comma, CRLF
           b"\n"                                          # blank: no row
           b" 2 , 0.5,0,0,0,0,0,0,0,0,0,0,0,1200,0,\n"    # spaces around fields
           b"junk,line\n"                                 # does not parse: no row
           b"3,0.5,0,0,0,0,0,0,0,5,6,7,8,1200,0\n")
    adc = parse_adc(raw, "v1")
    expected = (b"1,0.5,0,0,0,0,0,0,0,10,20,30,40,0,0\n"
                b"2,0.5,0,0,0,0,0,0,0,0,0,0,0,1200,0\n"
                b"3,0.5,0,0,0,0,0,0,0,5,6,7,8,1200,0\n")
    assert adc_csv(adc) == expected
    assert adc_csv_size(adc) == len(expected)
    # each line is an adc.csv row without its roi_number
    rows = adc.csv.decode().splitlines()[1:]
    assert [r.split(",", 1)[1] for r in rows] == expected.decode().splitlines()


def test_adc_csv_of_empty_or_missing_adc():
    for adc in (None, parse_adc(b"", "v2"), parse_adc(b"\n\njunk\n", "v2")):
        assert adc_csv(adc) == b"" and adc_csv_size(adc) == 0


def test_members_in_dashboard_order_with_exact_sizes():
    adc = parse_adc(b"1,2,3\n2,2,3\n", "v2")
    made = []
    out = members(D_BIN, {"a": 1}, adc, [(2, 10, 3), (11, 1, 1)],
                  lambda t: made.append(t) or b"png%d" % t)
    assert [m.name for m in out] == [
        METADATA, "D20130526T095207_IFCB013_headers.json", "D20130526T095207_IFCB013.csv",
        "D20130526T095207_IFCB013_00002.png", "D20130526T095207_IFCB013_00011.png"]
    assert [m.size for m in out[:3]] == [len(metadata_json(D_BIN)), len(b'{"a": 1}'), len(b"1,2,3\n2,2,3\n")]
    assert [m.size for m in out[3:]] == [png_size(10, 3), png_size(1, 1)]
    assert made == []  # sizes need no image
    assert out[4].data() == b"png11" and made == [11]


def test_an_adc_parsed_again_when_its_member_is_read():
    raw = b"1,2,3\n2,2,3\n"
    parses = []

    def again():
        parses.append(1)
        return parse_adc(raw, "v2")

    size = adc_csv_size(parse_adc(raw, "v2"))
    lazy = members(D_BIN, {}, again, [], lambda t: b"", csv_size=size)
    eager = members(D_BIN, {}, parse_adc(raw, "v2"), [], lambda t: b"")
    assert [(m.name, m.size) for m in lazy] == [(m.name, m.size) for m in eager] and parses == []
    assert lazy[2].data() == eager[2].data() == b"1,2,3\n2,2,3\n" and parses == [1]
    with pytest.raises(TypeError):
        members(D_BIN, {}, again, [], lambda t: b"")


def real_bins(ifcb_data: Path):
    root = ifcbfs.open_root(str(ifcb_data / "bins"))
    return [b for b in ifcbfs.bins(root) if b.images]


def zip_of(b):
    files = b.files
    adc = parse_adc(Path(files.adc.path).read_bytes(), files.bin_id.schema)
    images = [(im.target, im.width, im.height) for im in b.images]
    return adc, bin_zip(files.bin_id, b.header, adc, images, lambda t: ifcbfs.png(b, t),
                        files.mtime_ns // 10**9)


def test_real_bins_read_back_as_pyifcb_reads_them(ifcb_data, tmp_path):
    bins = real_bins(ifcb_data)
    assert len(bins) >= 5
    for b in bins:
        stem = str(b.files.bin_id)
        adc, z = zip_of(b)
        assert z.size == zip_size([(m.name, m.size) for m in z.members])
        data = z.read(0, z.size)
        assert len(data) == z.size
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[:3] == [METADATA, f"{stem}_headers.json", f"{stem}.csv"]
        assert names[3:] == [f"{stem}_{im.target:05d}.png" for im in b.images]
        meta = json.loads(zf.read(METADATA))
        assert meta["lid"] == stem and meta["schema"] == (1 if b.files.bin_id.style == "I" else 2)
        assert json.loads(zf.read(f"{stem}_headers.json")) == b.header
        # pyifcb: read_csv(header=None, index_col=False), rows numbered from 1
        lines = list(csv.reader(io.StringIO(zf.read(f"{stem}.csv").decode())))
        assert len(lines) == b.n_triggers
        x = 9 if b.files.bin_id.schema == "v1" else 13
        for roi in adc.rois:
            assert [int(v) for v in lines[roi.target - 1][x:x + 5]] == [
                roi.x, roi.y, roi.width, roi.height, roi.start]
        for im in b.images:
            assert zf.read(f"{stem}_{im.target:05d}.png") == ifcbfs.png(b, im.target)
        infos = zf.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert len({i.date_time for i in infos}) == 1
        _, again = zip_of(b)
        assert again.read(0, again.size) == data  # deterministic
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed (apt-get install unzip)")
    biggest = max(bins, key=lambda b: len(b.images))
    path = tmp_path / f"{biggest.files.bin_id}.zip"
    path.write_bytes(zip_of(biggest)[1].read(0, 1 << 40))
    done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "No errors detected" in done.stdout, done.stdout + done.stderr


def test_real_bin_ranged_reads_produce_few_images(ifcb_data):
    b = max(real_bins(ifcb_data), key=lambda b: len(b.images))
    asked = []
    files = b.files
    adc = parse_adc(Path(files.adc.path).read_bytes(), files.bin_id.schema)
    images = [(im.target, im.width, im.height) for im in b.images]
    z = bin_zip(files.bin_id, b.header, adc, images,
                lambda t: asked.append(t) or ifcbfs.png(b, t), files.mtime_ns // 10**9)
    whole = z.read(0, z.size)
    asked.clear()
    crcs = {}
    middle = z.size // 2
    assert z.read(middle, 4096, crcs) == whole[middle:middle + 4096]
    assert 1 <= len(asked) <= 3  # only the PNGs that overlap the range
    asked.clear()
    assert z.read(z.cd_offset, z.size, crcs) == whole[z.cd_offset:]  # needs every CRC once
    assert sorted(asked) == sorted(set(asked)) and len(crcs) == len(z.members)
    asked.clear()
    assert z.read(z.cd_offset, z.size, crcs) == whole[z.cd_offset:] and asked == []
