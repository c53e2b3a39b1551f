"""Every real bin of the shared IFCB data, through the public API, against expected.json."""
import hashlib
import io
import json

import pytest
from PIL import Image as PILImage

import ifcbfs
from ifcbfs.core.png import png_size


def assert_properties(got: dict, expected: dict) -> None:
    """Every expected property present with the same value and type (extra properties allowed)."""
    assert not set(expected) - set(got), f"missing properties: {sorted(set(expected) - set(got))}"
    for key, value in expected.items():
        assert got[key] == value and type(got[key]) is type(value), f"{key}: {got[key]!r} != {value!r}"


@pytest.fixture(scope="module")
def real_bins(ifcb_data):
    """bin id -> loaded Bin, for the bins in bins/."""
    return {str(b.files.bin_id): b for b in ifcbfs.bins(ifcbfs.open_root(str(ifcb_data / "bins")))}


def test_every_expected_bin_is_found(real_bins, expected):
    assert sorted(real_bins) == sorted(expected["bins"])


def test_images_names_sizes_and_pixels(real_bins, expected):
    n = 0
    for bin_id, exp in expected["bins"].items():
        b = real_bins[bin_id]
        pngs = {e.name: e for e in b.entries if e.name.endswith(".png")}
        assert sorted(pngs) == sorted(exp["images"]), bin_id          # none extra, none missing
        for name, want in exp["images"].items():
            im = pngs[name].image
            assert (im.width, im.height) == (want["width"], want["height"]), name
            assert ifcbfs.target_id(bin_id, im.target) + ".png" == name
            pixels = b.pixels(im)
            assert hashlib.sha256(pixels).hexdigest() == want["pixels_sha256"], name
            n += 1
    assert n == sum(len(exp["images"]) for exp in expected["bins"].values()) > 900


def test_served_png_bytes_decode_to_the_expected_pixels(real_bins, expected):
    for bin_id, exp in expected["bins"].items():
        b = real_bins[bin_id]
        for im in b.images:
            want = exp["images"][f"{ifcbfs.target_id(bin_id, im.target)}.png"]
            data = ifcbfs.png(b, im.target)
            assert len(data) == png_size(im.width, im.height) == b.by_name[
                f"{ifcbfs.target_id(bin_id, im.target)}.png"].size
            with PILImage.open(io.BytesIO(data)) as decoded:
                assert decoded.mode == "L" and decoded.size == (want["width"], want["height"])
                assert hashlib.sha256(decoded.tobytes()).hexdigest() == want["pixels_sha256"]


def test_image_returns_the_same_pixels(real_bins, expected):
    for bin_id in ("IFCB5_2012_028_081515", "D20220522T000439_IFCB134"):
        b = real_bins[bin_id]
        for im in b.images:
            pil = ifcbfs.image(b, im.target)
            want = expected["bins"][bin_id]["images"][f"{ifcbfs.target_id(bin_id, im.target)}.png"]
            assert pil.size == (want["width"], want["height"])
            assert hashlib.sha256(pil.tobytes()).hexdigest() == want["pixels_sha256"]
    with pytest.raises(ifcbfs.ImageMissing):
        ifcbfs.image(real_bins["IFCB5_2012_028_081515"], 4)     # the second half of the stitched pair
    with pytest.raises(ifcbfs.ImageMissing):
        ifcbfs.png(real_bins["IFCB5_2012_028_081515"], 4)


def test_stitched_pairs(real_bins, expected):
    for bin_id, exp in expected["bins"].items():
        pairs = [[p.target for p in im.parts] for im in real_bins[bin_id].images if len(im.parts) > 1]
        assert pairs == exp["stitched_pairs"], bin_id


def test_header_properties(real_bins, expected):
    for bin_id, exp in expected["bins"].items():
        b = real_bins[bin_id]
        assert_properties(b.header, exp["header"])
        doc = json.loads(b.read("hdr.json"))
        assert_properties(doc["header"], exp["header"])
        assert doc["bin_id"] == bin_id
        assert doc["n_images"] == len(exp["images"])
        assert doc["schema"] == ("v1" if bin_id.startswith("IFCB") else "v2")


def test_every_entry_reads_fully_and_exactly(real_bins):
    for b in real_bins.values():
        names = [e.name for e in b.entries]
        assert names == sorted(names) and names[-2:] == ["adc.csv", "hdr.json"]
        assert names[0] == f"{b.files.bin_id}.hdr"
        for e in b.entries:
            assert len(b.read(e.name)) == e.size


def test_odd_bins_are_handled_without_errors(ifcb_data):
    found = {(b.files.folder, str(b.files.bin_id)): b for b in ifcbfs.bins(ifcbfs.open_root(str(ifcb_data / "odd")))}
    assert sorted(found) == [
        ("D20130101T101010_IFCB099", "D20130101T101010_IFCB099"),
        ("D20150411T205456_IFCB012", "D20150411T205456_IFCB012"),
        ("IFCB5_2006_001_121212", "IFCB5_2006_001_121212"),
        ("IFCB5_2017_001_033645", "IFCB5_2017_001_033645"),
        ("no-roi", "IFCB5_2012_028_081515"),
    ]
    for key, b in found.items():
        for e in b.entries:
            assert len(b.read(e.name)) == e.size, (key, e.name)
        doc = json.loads(b.read("hdr.json"))
        assert doc["bin_id"] == key[1] and doc["n_images"] == len(b.images) == 0
    empty = found[("D20130101T101010_IFCB099", "D20130101T101010_IFCB099")]
    assert [e.name for e in empty.entries] == ["D20130101T101010_IFCB099.hdr", "adc.csv", "hdr.json"]
    assert empty.header == {}
    assert empty.n_triggers == 0
    header_only = found[("D20150411T205456_IFCB012", "D20150411T205456_IFCB012")]
    assert header_only.header["context"].startswith("softwareVersion:") and len(header_only.header) > 10
    two_bytes = found[("IFCB5_2017_001_033645", "IFCB5_2017_001_033645")]
    assert two_bytes.header["binarizeThreshold"] == 30 and two_bytes.images == []
    no_roi = found[("no-roi", "IFCB5_2012_028_081515")]
    assert no_roi.files.roi is None and no_roi.n_triggers == 7
    assert [e.name for e in no_roi.entries] == ["IFCB5_2012_028_081515.hdr", "adc.csv", "hdr.json"]


def test_the_whole_data_folder_walks_and_reads_without_errors(ifcb_data):
    n = 0
    for b in ifcbfs.bins(ifcbfs.open_root(str(ifcb_data))):
        for e in b.entries:
            if e.image is None:   # the images are checked above; the rest of every bin here
                assert len(b.read(e.name)) == e.size
        json.loads(b.read("hdr.json"))
        n += 1
    assert n >= 12 + 17    # bins/, odd/, and the header-only bins of headers/
