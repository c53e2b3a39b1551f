"""One bin: the files it serves, their exact sizes without pixel reads, and their bytes (SPEC 7)."""
import io
import json
import os

import pytest
from PIL import Image as PILImage

import ifcbfs.core.bin as bin_mod
import ifcbfs.core.roi as roi_mod
from ifcbfs.core.bin import Bin
from ifcbfs.core.errors import BinError, ImageMissing
from ifcbfs.core.metrics import KEYS
from ifcbfs.core.png import png_size
from ifcbfs.core.source import DataRoot, SourceUnreadable

D_ID = "D20130526T095207_IFCB013"
I_ID = "IFCB5_2012_028_081515"
HDR = ("softwareVersion: Imaging FlowCytobot Acquisition Software version 2.0\n"
       "imagerID: 13\ttemperature: 1\n"
       "operator: J\u00f6rg \u2013 \u6d77\n"
       "PMTAhighVoltage: 0.450000\n").encode()


def v2(trigger, x, y, w, h, start) -> str:
    return ",".join(map(str, [trigger, "4.6321", "0.0189"] + ["0"] * 10 + [x, y, w, h, start] + ["0"] * 6))


def v1(trigger, x, y, w, h, start) -> str:
    return ",".join(map(str, [trigger, "0.5"] + ["0"] * 7 + [x, y, w, h, start, 0])) + ","


def layout(sizes):
    """The .roi bytes of images of the given (w, h), each filled from its own pattern, after 3 stray bytes."""
    data, starts, pixels = bytearray(b"\xaa\xbb\xcc"), [], []
    for i, (w, h) in enumerate(sizes):
        px = bytes((x * 3 + y * 5 + 40 * i) & 0xFF for y in range(h) for x in range(w))
        starts.append(len(data))
        pixels.append(px)
        data += px
    return bytes(data + b"\xdd\xee"), starts, pixels


def write(folder, bin_id, *, hdr=HDR, adc=None, roi=None):
    folder.mkdir(parents=True, exist_ok=True)
    for ext, content in (("hdr", hdr), ("adc", adc), ("roi", roi)):
        if content is not None:
            (folder / f"{bin_id}.{ext}").write_bytes(content)
    return DataRoot(str(folder)).scan("").bins[bin_id]


@pytest.fixture
def d_bin(tmp_path):
    """A D-style bin: 6 triggers, 3 images (targets 2, 3, 5), lines 1, 4 and 6 without one."""
    sizes = [(30, 20), (7, 1), (64, 48)]
    roi, starts, pixels = layout(sizes)
    lines = [v2(1, 0, 0, 0, 0, starts[0]), v2(2, 100, 200, 30, 20, starts[0]), v2(3, 10, 10, 7, 1, starts[1]),
             v2(4, 0, 0, 0, 0, starts[2]), v2(5, 500, 600, 64, 48, starts[2]), v2(6, 0, 0, 0, 0, len(roi) - 2)]
    files = write(tmp_path, D_ID, adc=("\n".join(lines) + "\n").encode(), roi=roi)
    return files, dict(zip((2, 3, 5), zip(sizes, pixels))), lines


def names(b):
    return [e.name for e in b.entries]


def test_entries_are_sorted_with_exact_sizes(d_bin):
    files, images, _ = d_bin
    b = Bin.load(files)
    assert names(b) == [f"{D_ID}.hdr", f"{D_ID}_00002.png", f"{D_ID}_00003.png", f"{D_ID}_00005.png",
                        "adc.csv", "hdr.json"]
    assert names(b) == sorted(names(b))
    for target, ((w, h), _) in images.items():
        assert b.by_name[f"{D_ID}_{target:05d}.png"].size == png_size(w, h)
    assert b.by_name["hdr.json"].size == len(b.hdr_json)
    for e in b.entries:
        data = b.read(e.name)
        assert len(data) == e.size
        if e.image is not None:
            (w, h), px = images[e.image.target]
            with PILImage.open(io.BytesIO(data)) as im:
                assert im.size == (w, h) and im.tobytes() == px


def test_loading_and_listing_read_no_pixel(d_bin, monkeypatch):
    files, _, _ = d_bin
    calls = []
    real = roi_mod.read_pixels
    real_pread = os.pread

    def counting(*args):
        calls.append(args)
        return real(*args)

    def pread(*args):
        calls.append(("pread",) + args)
        return real_pread(*args)

    monkeypatch.setattr(roi_mod, "read_pixels", counting)
    monkeypatch.setattr(bin_mod, "read_pixels", counting)
    monkeypatch.setattr(os, "pread", pread)
    b = Bin.load(files)
    listing = [(e.name, e.size) for e in b.entries]
    assert len(listing) == 6 and b.by_name["hdr.json"].size > 0 and len(b.hdr_json) > 0
    b.read("hdr.json")
    b.read("adc.csv")
    b.read(f"{D_ID}.hdr")
    assert calls == []
    b.read(f"{D_ID}_00002.png")    # and the counter does count pixel reads
    assert calls[0][1:] == (files.roi, 3, 30, 20) and calls[1][0] == "pread"


def test_hdr_json(d_bin):
    files, _, _ = d_bin
    b = Bin.load(files)
    data = b.read("hdr.json")
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    doc = json.loads(data.decode("utf-8"))
    assert list(doc) == ["bin_id", "timestamp", "instrument", "schema", "n_triggers", "n_images", "header", *KEYS]
    assert doc["bin_id"] == D_ID
    assert doc["timestamp"] == "2013-05-26T09:52:07Z"
    assert doc["instrument"] == 13 and type(doc["instrument"]) is int
    assert doc["schema"] == "v2"
    assert doc["n_triggers"] == 6
    assert doc["n_images"] == 3 == sum(n.endswith(".png") for n in names(b))
    assert doc["header"] == {
        "context": "softwareVersion: Imaging FlowCytobot Acquisition Software version 2.0",
        "imagerID": "13\ttemperature: 1",
        "operator": "J\u00f6rg \u2013 \u6d77",
        "PMTAhighVoltage": 0.45,
    }
    assert "J\u00f6rg \u2013 \u6d77".encode("utf-8") in data    # UTF-8, not \u escapes
    assert Bin.load(files).read("hdr.json") == data               # deterministic bytes
    assert b.read("hdr.json") == data


def test_hdr_json_of_an_i_style_bin(tmp_path):
    roi, starts, _ = layout([(5, 5)])
    files = write(tmp_path, I_ID, hdr=None, adc=(v1(1, 0, 0, 5, 5, starts[0]) + "\n").encode(), roi=roi)
    doc = json.loads(Bin.load(files).read("hdr.json"))
    assert {k: doc[k] for k in list(doc)[:7]} == {
        "bin_id": I_ID, "timestamp": "2012-01-28T08:15:15Z", "instrument": 5, "schema": "v1",
        "n_triggers": 1, "n_images": 1, "header": {}}
    assert (doc["n_images_adc"], doc["last_trigger"], doc["stitched"]) == (1, 1, [])


def test_adc_csv(d_bin):
    files, _, lines = d_bin
    b = Bin.load(files)
    expected = ("roi_number,trigger,adcTime,pmtA,pmtB,pmtC,pmtD,peakA,peakB,peakC,peakD,timeOfFlight,"
                "grabTimeStart,grabTimeEnd,roiX,roiY,roiWidth,roiHeight,startByte,comparatorOut,startPoint,"
                "signalLength,status,runTime,inhibitTime\n"
                + "".join(f"{n},{line}\n" for n, line in enumerate(lines, 1))).encode()
    assert b.read("adc.csv") == expected
    assert b.by_name["adc.csv"].size == len(expected)


def test_adc_csv_is_a_snapshot_of_the_adc_as_listed(d_bin):
    files, _, _ = d_bin
    b = Bin.load(files)
    before = b.read("adc.csv")
    with open(files.adc.path, "ab") as f:   # an instrument appends a line
        f.write((v2(7, 1, 1, 2, 2, 3) + "\n").encode())
    assert b.read("adc.csv") == before
    assert Bin.load(DataRoot(os.path.dirname(files.adc.path)).scan("").bins[D_ID]).n_triggers == 7


def test_a_bin_without_roi_has_no_png(d_bin, tmp_path):
    files, _, _ = d_bin
    os.remove(files.roi.path)
    files = DataRoot(str(tmp_path)).scan("").bins[D_ID]
    assert files.roi is None
    b = Bin.load(files)
    assert names(b) == [f"{D_ID}.hdr", "adc.csv", "hdr.json"]
    doc = json.loads(b.read("hdr.json"))
    assert (doc["n_triggers"], doc["n_images"]) == (6, 0)
    for e in b.entries:
        assert len(b.read(e.name)) == e.size


def test_a_bin_without_adc_has_only_its_header_files(d_bin, tmp_path):
    files, _, _ = d_bin
    os.remove(files.adc.path)
    files = DataRoot(str(tmp_path)).scan("").bins[D_ID]
    assert files.adc is None
    b = Bin.load(files)
    assert names(b) == [f"{D_ID}.hdr", "hdr.json"]
    doc = json.loads(b.read("hdr.json"))
    assert (doc["n_triggers"], doc["n_images"], doc["schema"]) == (0, 0, "v2")
    assert doc["header"]["PMTAhighVoltage"] == 0.45


def test_a_bin_with_only_a_roi_file(tmp_path):
    files = write(tmp_path, D_ID, hdr=None, roi=b"\x00" * 100)
    b = Bin.load(files)
    assert names(b) == ["hdr.json"] and b.header == {}
    assert json.loads(b.read("hdr.json"))["n_images"] == 0


def test_empty_files(tmp_path):
    b = Bin.load(write(tmp_path, D_ID, hdr=b"", adc=b"", roi=b""))
    assert names(b) == [f"{D_ID}.hdr", "adc.csv", "hdr.json"]
    assert b.read(f"{D_ID}.hdr") == b"" and b.by_name[f"{D_ID}.hdr"].size == 0
    assert b.read("adc.csv").count(b"\n") == 1
    assert json.loads(b.read("hdr.json"))["header"] == {}


def test_the_raw_header_is_served_unchanged(tmp_path):
    raw = b"softwareVersion: 1.2\r\nsyringe 3 \xff\xfe not a key value line\t\r\n\r\n"
    b = Bin.load(write(tmp_path, D_ID, hdr=raw, adc=b"", roi=b""))
    assert b.by_name[f"{D_ID}.hdr"].size == len(raw) and b.read(f"{D_ID}.hdr") == raw


def test_a_raw_header_cut_since_listing_is_image_missing(d_bin):
    files, _, _ = d_bin
    b = Bin.load(files)
    with open(files.hdr.path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(ImageMissing):
        b.read(f"{D_ID}.hdr")
    with open(files.hdr.path, "wb") as f:   # a longer one: the bytes listed are the ones read
        f.write(HDR + b"more: 1\n")
    assert b.read(f"{D_ID}.hdr") == HDR


def test_images_whose_bytes_pass_the_end_of_the_roi_are_absent(d_bin):
    files, _, _ = d_bin
    with open(files.roi.path, "r+b") as f:   # cut the last image short by one byte
        f.truncate(files.roi.size - 3)
    files = DataRoot(os.path.dirname(files.roi.path)).scan("").bins[D_ID]
    b = Bin.load(files)
    assert names(b) == [f"{D_ID}.hdr", f"{D_ID}_00002.png", f"{D_ID}_00003.png", "adc.csv", "hdr.json"]
    doc = json.loads(b.read("hdr.json"))
    assert (doc["n_triggers"], doc["n_images"]) == (6, 2)
    for e in b.entries:
        assert len(b.read(e.name)) == e.size


def test_reading_an_image_gone_since_listing_is_image_missing(d_bin):
    files, _, _ = d_bin
    b = Bin.load(files)
    with open(files.roi.path, "r+b") as f:
        f.truncate(610)   # images 2 and 3 are still whole
    with pytest.raises(ImageMissing):
        b.read(f"{D_ID}_00005.png")
    assert len(b.read(f"{D_ID}_00002.png")) == b.by_name[f"{D_ID}_00002.png"].size


def test_unknown_names_are_image_missing(d_bin):
    b = Bin.load(d_bin[0])
    for name in (f"{D_ID}_00001.png", f"{D_ID}_00004.png", "adc.txt", "", "../hdr.json"):
        with pytest.raises(ImageMissing):
            b.read(name)


def test_a_file_gone_before_loading_is_source_unreadable(d_bin):
    files, _, _ = d_bin
    os.remove(files.hdr.path)
    with pytest.raises(SourceUnreadable) as info:
        Bin.load(files)
    assert isinstance(info.value, BinError) and info.value.errno == 2


def test_a_stitched_image_has_the_size_of_its_union(tmp_path):
    roi, starts, _ = layout([(40, 30), (40, 30), (9, 9)])
    lines = [v1(1, 0, 0, 40, 30, starts[0]), v1(1, 20, 10, 40, 30, starts[1]), v1(2, 0, 0, 9, 9, starts[2])]
    b = Bin.load(write(tmp_path, I_ID, adc=("\n".join(lines) + "\n").encode(), roi=roi))
    assert names(b) == [f"{I_ID}.hdr", f"{I_ID}_00001.png", f"{I_ID}_00003.png", "adc.csv", "hdr.json"]
    assert b.by_name[f"{I_ID}_00001.png"].size == png_size(60, 40)
    assert json.loads(b.read("hdr.json"))["n_images"] == 2
    for e in b.entries:
        assert len(b.read(e.name)) == e.size
