"""Tests of ifcbfs.synth: deterministic, well-formed synthetic IFCB bins."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ifcbfs import synth

REPO = Path(__file__).resolve().parent.parent
D_ID = "D20240601T002000_IFCB124"
I_ID = "IFCB5_2012_028_081515"


# --- a small checker written from SPEC sections 2-5, independent of ifcbfs.core ---------------

def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return data.decode("ascii").splitlines()


def adc_rows(base: Path, style: str) -> list[dict]:
    """Each ADC line as a dict; checks field counts and types per schema."""
    rows = []
    for line in read_lines(base.with_suffix(".adc")):
        fields = line.split(",")
        if style == "D":
            assert len(fields) == 24, line
            ix = 13
        else:
            assert len(fields) == 16 and fields[-1] == "", line
            ix = 9
        for f in fields[1:ix] + fields[ix + 5:len(fields) - (style == "I")]:
            float(f)
        x, y, w, h, start = (int(f) for f in fields[ix:ix + 5])
        rows.append(dict(trigger=int(fields[0]), x=x, y=y, w=w, h=h, start=start))
    return rows


def check_bin(folder, bin_id: str, result: dict, lead: int = 0) -> list[dict]:
    """Assert the bin's three files are consistent; return its ADC rows."""
    base = Path(folder) / bin_id
    style = "D" if bin_id.startswith("D") else "I"
    roi_size = base.with_suffix(".roi").stat().st_size
    rows = adc_rows(base, style)
    assert len(rows) >= result["n_triggers"]
    triggers = [r["trigger"] for r in rows]
    assert sorted(set(triggers)) == list(range(1, result["n_triggers"] + 1))
    assert triggers == sorted(triggers)
    offset, n_images = lead, 0
    for r in rows:
        assert r["start"] == offset  # images are concatenated; no-image lines hold the offset
        if r["w"] or r["h"]:
            assert r["w"] > 0 and r["h"] > 0 and r["x"] >= 0 and r["y"] >= 0
            assert r["x"] + r["w"] <= synth.CAMERA_W and r["y"] + r["h"] <= synth.CAMERA_H
            offset += r["w"] * r["h"]
            n_images += 1
        else:
            assert r["x"] == r["y"] == 0
    assert offset == roi_size == result["roi_size"]
    assert n_images == result["n_images"]
    hdr = read_lines(base.with_suffix(".hdr"))
    if style == "D":
        assert hdr[0] == "softwareVersion: Imaging FlowCytobot Acquisition Software version 3.0.0.0"
        props = dict(line.rstrip().split(": ", 1) for line in hdr[1:] if ": " in line)
        assert len(props["ADCFileFormat"].split(",")) == 24
        assert int(props["triggerCount"]) == result["n_triggers"]
        assert int(props["roiCount"]) == n_images
        for key in ("temperature", "humidity", "runTime", "inhibitTime", "PMTAhighVoltage"):
            float(props[key])
        int(props["binarizeThreshold"])
    else:
        assert len(hdr) == 6
        assert hdr[0] == '"Imaging FlowCytobot Acquisition Software version 1.0; October 2005"'
        values = [v.strip('"').strip() for v in hdr[-1].split(",")]
        assert len(values) == 6
        float(values[0]), float(values[1]), int(values[2]), float(values[3]), float(values[4])
        int(values[5])
    return rows


def box(r: dict) -> tuple:
    return r["x"], r["y"], r["w"], r["h"]


def spec_pairs(rows: list[dict]) -> list[tuple]:
    """SPEC section 5: consecutive image lines, same trigger, overlap > 2 px both ways."""
    images = [(n, r) for n, r in enumerate(rows, 1) if r["w"]]
    return [(na, nb) for (na, a), (nb, b) in zip(images, images[1:])
            if a["trigger"] == b["trigger"]
            and a["x"] < b["x"] + b["w"] - 2 and a["x"] + a["w"] > b["x"] + 2
            and a["y"] < b["y"] + b["h"] - 2 and a["y"] + a["h"] > b["y"] + 2]


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("bin_id", [D_ID, I_ID])
def test_same_seed_same_bytes(tmp_path, bin_id):
    a = synth.write_bin(tmp_path / "a", bin_id, 300, seed=7, pair_fraction=0.2, chain_fraction=0.3)
    b = synth.write_bin(tmp_path / "b", bin_id, 300, seed=7, pair_fraction=0.2, chain_fraction=0.3)
    assert a == b
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_different_seed_different_bytes(tmp_path):
    synth.write_bin(tmp_path / "a", D_ID, 200, seed=1)
    synth.write_bin(tmp_path / "b", D_ID, 200, seed=2)
    for ext in (".adc", ".roi", ".hdr"):
        assert (tmp_path / "a" / (D_ID + ext)).read_bytes() != (tmp_path / "b" / (D_ID + ext)).read_bytes()


def test_known_digest_is_stable(tmp_path):
    """Pins the output (the same on CPython 3.9 to 3.13), so that a change of the generator or of
    Python's random module is noticed. Update KNOWN_DIGEST when the generator changes on purpose."""
    synth.write_bin(tmp_path, I_ID, 40, seed=3, pair_fraction=0.3)
    synth.write_bin(tmp_path, D_ID, 40, seed=3)
    digest = hashlib.sha256(repr(sorted(tree_digest(tmp_path).items())).encode()).hexdigest()
    assert digest == KNOWN_DIGEST


KNOWN_DIGEST = "b5a80c383c280291cb9f04bacff7b292e7cbd4393ab6edc54a133c41919ef269"


def test_dataset_deterministic_and_laid_out(tmp_path):
    kw = dict(n_bins=4, n_triggers=30, seed=5, style="mixed", mtime=1_600_000_000)
    ids = synth.write_dataset(tmp_path / "a", **kw)
    assert synth.write_dataset(tmp_path / "b", **kw) == ids
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert ids == ["D20240601T000000_IFCB124", "IFCB5_2024_153_002000",
                   "D20240601T004000_IFCB124", "IFCB5_2024_153_010000"]
    for p in (tmp_path / "a").rglob("*"):
        assert p.stat().st_mtime == 1_600_000_000
    assert (tmp_path / "a/2024/D20240601/D20240601T000000_IFCB124.roi").is_file()
    assert (tmp_path / "a/IFCB5_2024_153/IFCB5_2024_153_002000.adc").is_file()


def test_dataset_bins_do_not_depend_on_count(tmp_path):
    small = synth.write_dataset(tmp_path / "a", n_bins=2, n_triggers=20, seed=9)
    synth.write_dataset(tmp_path / "b", n_bins=3, n_triggers=20, seed=9)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert len(small) == 2 and all(b[k] == v for k, v in a.items())


@pytest.mark.parametrize("layout,path", [
    ("deep", "D2024/D202406/D20240601/D20240601T000000_IFCB124.hdr"),
    ("flat", "D20240601T000000_IFCB124.hdr"),
])
def test_layouts(tmp_path, layout, path):
    synth.write_dataset(tmp_path, n_bins=1, n_triggers=3, layout=layout)
    assert (tmp_path / path).is_file()


# --- well-formed files ------------------------------------------------------------------------

@pytest.mark.parametrize("bin_id", [D_ID, I_ID])
def test_files_parse(tmp_path, bin_id):
    res = synth.write_bin(tmp_path, bin_id, 2000, seed=4, pair_fraction=0.05)
    assert res["bin_id"] == bin_id and res["n_triggers"] == 2000
    rows = check_bin(tmp_path, bin_id, res)
    assert 0.4 < res["n_images"] / 2000 < 0.6
    widths = sorted(r["w"] for r in rows if r["w"])
    assert 20 <= widths[len(widths) // 2] <= 300  # median in the usual range


def test_dataset_files_parse(tmp_path):
    info: list = []
    ids = synth.write_dataset(tmp_path, n_bins=6, n_triggers=100, seed=2, style="mixed", info=info)
    assert [r["bin_id"] for r in info] == ids
    for res in info:
        folder = next(p.parent for p in tmp_path.rglob(res["bin_id"] + ".hdr"))
        check_bin(folder, res["bin_id"], res)


def test_options(tmp_path):
    res = synth.write_bin(tmp_path, D_ID, 50, crlf=True, lead_bytes=17, mtime=1_500_000_000.5)
    check_bin(tmp_path, D_ID, res, lead=17)
    for ext in (".hdr", ".adc", ".roi"):
        assert os.stat(tmp_path / (D_ID + ext)).st_mtime == 1_500_000_000.5
    for ext in (".hdr", ".adc"):
        data = (tmp_path / (D_ID + ext)).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 0


def test_no_images_and_empty_bin(tmp_path):
    res = synth.write_bin(tmp_path, D_ID, 20, image_fraction=0.0)
    assert res["n_images"] == 0 and res["roi_size"] == 0
    check_bin(tmp_path, D_ID, res)
    res = synth.write_bin(tmp_path / "e", I_ID, 0)
    assert (tmp_path / "e" / (I_ID + ".adc")).read_bytes() == b""
    check_bin(tmp_path / "e", I_ID, res)


def test_pixels_look_like_plankton(tmp_path):
    res = synth.write_bin(tmp_path, D_ID, 200, seed=1, image_fraction=1.0)
    roi = (tmp_path / (D_ID + ".roi")).read_bytes()
    for r in check_bin(tmp_path, D_ID, res)[:50]:
        pix = roi[r["start"]:r["start"] + r["w"] * r["h"]]
        corner = sorted(pix[:r["w"]])  # the first row is mostly background
        assert 165 <= corner[len(corner) // 2] <= 235
        assert min(pix) < 170  # a darker particle
        assert len(set(pix)) > 10  # noisy, not flat


def test_bad_bin_id(tmp_path):
    with pytest.raises(ValueError):
        synth.write_bin(tmp_path, "not_a_bin", 3)


# --- stitched pairs ---------------------------------------------------------------------------

def test_pairs_overlap(tmp_path):
    res = synth.write_bin(tmp_path, I_ID, 3000, seed=11, pair_fraction=0.2, chain_fraction=0.2)
    rows = check_bin(tmp_path, I_ID, res)
    pairs = res["pairs"]
    assert len(pairs) > 50
    # exactly the pairs the SPEC rule finds: decoys (same trigger, no real overlap) are not pairs
    assert spec_pairs(rows) == pairs
    decoys = [n for n in range(1, len(rows)) if rows[n]["trigger"] == rows[n - 1]["trigger"]
              and (n, n + 1) not in pairs]
    assert decoys
    roi = (tmp_path / (I_ID + ".roi")).read_bytes()
    gaps = 0
    for ta, tb in pairs:
        a, b = rows[ta - 1], rows[tb - 1]
        assert tb == ta + 1 and a["trigger"] == b["trigger"] and a["w"] and b["w"]
        ox = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
        oy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
        assert ox >= 5 and oy >= 5  # clearly more than 2 px
        # both ROIs are cut from the same particle: pixels agree where they overlap
        x0, y0 = max(a["x"], b["x"]), max(a["y"], b["y"])
        for r in (a, b):
            first = r["start"] + (y0 - r["y"]) * r["w"] + x0 - r["x"]
            r["pix"] = [roi[first + j * r["w"]:first + j * r["w"] + ox] for j in range(oy)]
        assert a["pix"] == b["pix"]
        ux = max(a["x"] + a["w"], b["x"] + b["w"]) - min(a["x"], b["x"])
        uy = max(a["y"] + a["h"], b["y"] + b["h"]) - min(a["y"], b["y"])
        gaps += ux * uy > a["w"] * a["h"] + b["w"] * b["h"] - ox * oy
    assert 0 < gaps < len(pairs)  # some pairs leave a gap in their union, some do not
    assert any(p[1] == q[0] for p, q in zip(pairs, pairs[1:]))  # a chain


def test_d_style_can_have_overlapping_lines_too(tmp_path):
    res = synth.write_bin(tmp_path, D_ID, 500, seed=2, pair_fraction=0.3)
    assert res["pairs"] and spec_pairs(check_bin(tmp_path, D_ID, res)) == res["pairs"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), seed=st.integers(0, 2**64), image=st.floats(0, 1), pair=st.floats(0, 1),
       chain=st.floats(0, 1), d=st.booleans(), lead=st.integers(0, 5))
def test_any_arguments_give_valid_bins(tmp_path_factory, n, seed, image, pair, chain, d, lead):
    folder = tmp_path_factory.mktemp("h")
    bin_id = D_ID if d else I_ID
    res = synth.write_bin(folder, bin_id, n, seed, image_fraction=image, pair_fraction=pair,
                          chain_fraction=chain, lead_bytes=lead)
    assert spec_pairs(check_bin(folder, bin_id, res, lead=lead)) == res["pairs"]


# --- command line -----------------------------------------------------------------------------

def test_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ifcbfs.synth", str(tmp_path / "d"), "--bins", "2",
                          "--triggers", "50"], cwd=REPO, capture_output=True, text=True, check=True)
    assert len(out.stdout.strip().splitlines()) == 1 and "2 bins" in out.stdout
    assert len(list((tmp_path / "d").rglob("*.roi"))) == 2


def test_main_in_process(tmp_path, capsys):
    assert synth.main([str(tmp_path), "--bins", "3", "--triggers", "10", "--style", "I", "--seed", "4"]) == 0
    assert "3 bins, 30 triggers" in capsys.readouterr().out
    assert len(list(tmp_path.glob("IFCB5_2024_153/*.adc"))) == 3


# --- through the parsing core, when it is there -----------------------------------------------

def test_core_parses_synth_output(tmp_path):
    adc = pytest.importorskip("ifcbfs.core.adc")
    stitch = pytest.importorskip("ifcbfs.core.stitch")
    if not hasattr(adc, "parse_adc") or not hasattr(stitch, "find_pairs"):
        pytest.skip("parsing core API not available")
    res = synth.write_bin(tmp_path, I_ID, 1000, seed=6, pair_fraction=0.2, chain_fraction=0.2)
    parsed = adc.parse_adc((tmp_path / (I_ID + ".adc")).read_bytes(), "v1")
    assert parsed.n_triggers == len(read_lines(tmp_path / (I_ID + ".adc")))
    assert len(parsed.rois) == res["n_images"]
    assert [(a.target, b.target) for a, b in stitch.find_pairs(parsed.rois)] == res["pairs"]
