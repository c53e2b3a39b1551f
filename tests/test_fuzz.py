"""Property-based fuzzing of the header parser, the ADC parser and the namespace over arbitrary
bytes. Nothing but BinError (FsError from the namespace) may come out, and every read returns
exactly the size that was listed.

The number of examples per test is IFCBFS_FUZZ_EXAMPLES (default 200, a few seconds in all);
for a long run: IFCBFS_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ifcbfs.core.adc import COLUMNS, MAX_IMAGE_PIXELS, MAX_SIDE, parse_adc
from ifcbfs.core.errors import BinError
from ifcbfs.core.hdr import LEGACY_FIRST, V2_FIRST, parse_hdr
from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import ROOT_INO, FsError, Namespace, Options

EXAMPLES = int(os.environ.get("IFCBFS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
D_ID, I_ID = "D20240601T000000_IFCB124", "IFCB5_2012_028_081515"
EOLS = st.sampled_from(["\n", "\r\n"])


# --- headers -------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0.450000", ".675", "-0", "1e999", "-1e999", "nan", "inf", "9" * 5000, "1_000", "0x1F",
                     "True", "False", "true", "", " 30", "30.0", "30.5", "+7", "1e308", "4.9e-324"]),
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)
KEYS = st.one_of(st.sampled_from(["temperature", "humidity", "binarizeThreshold", "blobSizeThreshold",
                                  "ADCFileFormat", "runTime", "context", "softwareVersion", ""]), TEXT)


@st.composite
def headers(draw) -> bytes:
    kind = draw(st.integers(0, 4))
    eol = draw(EOLS)
    if kind == 0:
        return draw(st.binary(max_size=2000))
    if kind == 1:  # key-value
        lines = [draw(st.sampled_from(["softwareVersion: 1.1.5.19", "SoftwareVersion: 1.0.0.0", "softwareVersion:"]))]
        for _ in range(draw(st.integers(0, 12))):
            sep = draw(st.sampled_from([": ", ":", ": : ", " : ", ":\t"]))
            lines.append(draw(KEYS) + sep + draw(st.one_of(NUMBERS, TEXT)) + draw(st.sampled_from(["", "\t", " "])))
    elif kind == 2:  # legacy
        lines = [LEGACY_FIRST] + draw(st.lists(TEXT, max_size=6))
        values = draw(st.lists(NUMBERS, max_size=8))
        lines.append(",".join(f'"{draw(st.sampled_from(["", " "]))}{v}"' for v in values))
    elif kind == 3:  # version 2.0 with a sample date
        lines = [V2_FIRST, draw(st.sampled_from(["Sample Date: 2010-05-01", "Sample", ""]))]
        for _ in range(draw(st.integers(0, 4))):
            lines.append(draw(st.sampled_from([
                f"run time = {draw(NUMBERS)} s  inhibit time = {draw(NUMBERS)}",
                f"{draw(NUMBERS)} temperature, {draw(NUMBERS)} humidity", draw(TEXT)])))
    else:
        lines = draw(st.lists(TEXT, max_size=8))
    data = eol.join(lines).encode("utf-8") + (eol.encode() if draw(st.booleans()) else b"")
    if draw(st.integers(0, 5)) == 0:  # damage: bytes spliced in
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=20)) + data[at:]
    return data


def check_header(props) -> None:
    assert isinstance(props, dict) and all(isinstance(k, str) for k in props)
    for key in ("temperature", "humidity"):
        if key in props:
            assert type(props[key]) is float
    for key in ("binarizeThreshold", "blobSizeThreshold"):
        if key in props:
            assert type(props[key]) is int
    for value in props.values():
        assert isinstance(value, (str, int, float, bool))
    json.dumps(props, allow_nan=False, ensure_ascii=False).encode("utf-8")  # as hdr.json writes it


@FUZZ
@given(headers())
def test_header_parser_takes_any_bytes(data):
    try:
        props = parse_hdr(data)
    except BinError:
        return
    check_header(props)
    if data.strip():
        assert "context" in props or not data.decode("utf-8", "replace").strip()


@FUZZ
@given(st.lists(TEXT, max_size=10), st.sampled_from([LEGACY_FIRST, V2_FIRST, "softwareVersion: 1", "x"]))
def test_header_line_ends_do_not_matter(lines, first):
    text = "\n".join([first] + lines)
    assert parse_hdr(text.encode()) == parse_hdr(text.replace("\n", "\r\n").encode())


# --- ADC files -------------------------------------------------------------------------
INTS = st.one_of(st.integers(0, 3000), st.integers(-10**20, 10**20), st.just(0)).map(str)
FIELDS = st.one_of(
    INTS, INTS, st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "-999.00000", "1_0", "+5", "05", "0x10", "1e3", "abc", " 7 ", "\t3", "\x00", "nan",
                     "9" * 400, "\x0c", "\x1c"]),
    st.text(st.characters(min_codepoint=1, max_codepoint=0x7F, blacklist_characters="\r\n,"), max_size=8),
)


@st.composite
def adc_lines(draw, schema: str, roi_size: int = 3000) -> list[str]:
    ix = 9 if schema == "v1" else 13
    width = len(COLUMNS[schema])
    lines = []
    for n in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 5))
        if kind <= 2:  # a plausible line: image fields near the ROI file's size
            fields = [str(draw(st.integers(1, 5)))] + [draw(FIELDS) for _ in range(width - 1)]
            w, h = draw(st.integers(0, 40)), draw(st.integers(0, 40))
            fields[ix:ix + 5] = [str(draw(st.integers(-5, 60))), str(draw(st.integers(-5, 60))), str(w), str(h),
                                 str(draw(st.integers(-5, roi_size + 10)))]
            if kind == 1:
                fields[ix + draw(st.integers(0, 4))] = draw(FIELDS)
            if schema == "v1" and draw(st.booleans()):
                fields.append("")  # the trailing comma of old instruments
            line = ",".join(fields)
        elif kind == 3:
            line = ",".join(draw(st.lists(FIELDS, max_size=30)))
        elif kind == 4:
            line = draw(st.sampled_from(["", " ", ",", "\t,\t", "1", "1,", "#", "\x00"]))
        else:
            line = draw(TEXT)
        lines.append(line)
    return lines


@st.composite
def adc_files(draw, schema: str) -> bytes:
    if draw(st.integers(0, 6)) == 0:
        return draw(st.binary(max_size=3000))
    lines = draw(adc_lines(schema))
    eol = draw(EOLS)
    data = eol.join(lines).encode("utf-8") + (eol.encode() if lines and draw(st.booleans()) else b"")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    if draw(st.integers(0, 4)) == 0:
        data = data[:draw(st.integers(0, len(data)))]  # cut anywhere
    return data


_STRICT_INT = re.compile(r"[+-]?[0-9]+")


def reference_adc(data: bytes, schema: str, final: bool = False) -> tuple[list, list, int]:
    """SPEC section 3, written plainly: (rows, rois, skipped). An integer is [+-]?digits.
    An unterminated last line gets its row only when the file is `final`, and an image only
    when it holds the field after the start byte."""
    ix = 9 if schema == "v1" else 13
    pieces = data.split(b"\n")
    rows, rois, skipped = [], [], 0
    for number, raw in enumerate(pieces, 1):
        if not raw.isascii():
            skipped += 1
            continue
        line = raw.decode("ascii").strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 1 and fields[-1] == "":
            fields.pop()
        cut = number == len(pieces) and len(fields) < ix + 6
        if cut and not final:  # an unterminated line still being written
            skipped += 1
            continue
        if not _STRICT_INT.fullmatch(fields[0]):
            skipped += 1
            continue
        if number != len(pieces) or final:  # an unterminated line gets its row with its newline
            rows.append(f"{number}," + ",".join(fields))
        box = fields[ix:ix + 5]
        if not cut and len(box) == 5 and all(_STRICT_INT.fullmatch(f) for f in box):
            x, y, w, h, start = map(int, box)
            if 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE and start >= 0 and w * h <= MAX_IMAGE_PIXELS:
                rois.append((number, int(fields[0]), x, y, w, h, start))
    return rows, rois, skipped


def check_adc(data: bytes, schema: str, final: bool = False) -> None:
    try:
        adc = parse_adc(data, schema, final)
    except BinError:
        return
    assert adc.n_triggers == len(adc.rows) - 1
    csv = adc.csv
    assert len(csv) == adc.csv_size and csv.isascii()
    assert adc.rows[0] == "roi_number," + ",".join(COLUMNS[schema])
    rows, rois, skipped = reference_adc(data, schema, final)
    assert list(adc.rows[1:]) == rows
    assert [tuple(r) for r in adc.rois] == rois
    assert adc.skipped == skipped


@FUZZ
@given(st.sampled_from(["v1", "v2"]).flatmap(lambda s: st.tuples(st.just(s), adc_files(s))), st.booleans())
def test_adc_parser_takes_any_bytes(case, final):
    schema, data = case
    check_adc(data, schema, final)


@FUZZ
@given(st.sampled_from(["v1", "v2"]), st.binary(max_size=4000), st.booleans())
def test_adc_parser_takes_raw_binary(schema, data, final):
    check_adc(data, schema, final)


@FUZZ
@given(st.sampled_from(["v1", "v2"]).flatmap(lambda s: st.tuples(st.just(s), adc_lines(s))), st.booleans())
def test_adc_line_ends_do_not_matter(case, final):
    schema, lines = case
    lf = "\n".join(lines) + ("\n" if final else "")
    a, b = parse_adc(lf.encode(), schema), parse_adc(lf.replace("\n", "\r\n").encode(), schema)
    assert (a.rows, a.rois, a.n_triggers) == (b.rows, b.rois, b.n_triggers)


# --- the namespace over arbitrary bin files ------------------------------------------------
@st.composite
def bins(draw) -> tuple[str, dict]:
    bin_id = draw(st.sampled_from([D_ID, I_ID]))
    schema = "v2" if bin_id == D_ID else "v1"
    roi = draw(st.binary(max_size=3000))
    if draw(st.booleans()):  # a plausible ADC over this ROI, with overlapping pairs for I-style bins
        lines = draw(adc_lines(schema, len(roi)))
        adc = "\n".join(lines).encode() + (b"\n" if draw(st.booleans()) else b"")
    else:
        adc = draw(adc_files(schema))
    files = {"hdr": draw(headers()), "adc": adc, "roi": roi}
    for ext in ("hdr", "adc", "roi"):
        if draw(st.integers(0, 6)) == 0:
            files[ext] = None  # missing
    return bin_id, files


def walk(ns: Namespace, ino: int = ROOT_INO):
    for node in ns.listing(ino):
        yield node
        if node.is_dir:
            try:
                yield from walk(ns, node.ino)
            except FsError:
                pass


def read_all(ns: Namespace) -> int:
    n = 0
    for node in list(walk(ns)):
        if node.is_dir:
            continue
        try:
            data = ns.read(node.ino)
        except FsError:
            continue
        assert len(data) == node.size, node.path
        n += 1
        if node.name.endswith(".png"):
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                assert im.mode == "L" and im.size == (node.entry.image.width, node.entry.image.height)
        elif node.name == "hdr.json":
            assert json.loads(data)["n_images"] == sum(n.name.endswith(".png") for n in ns.children(node.parent.ino).values())
    return n


def write(folder: str, bin_id: str, files: dict) -> None:
    for ext, data in files.items():
        if data is not None:
            with open(os.path.join(folder, f"{bin_id}.{ext}"), "wb") as f:
                f.write(data)


@FUZZ
@given(bins(), st.sampled_from(["mirror", "flat"]))
def test_namespace_lists_and_reads_any_bin(case, layout):
    bin_id, files = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "day")
        os.mkdir(folder)
        write(folder, bin_id, files)
        ns = Namespace(DataRoot(tmp), Options(layout=layout, cache_size=1 << 20))
        try:
            read_all(ns)
        except FsError:
            pass


@FUZZ
@given(bins(), st.data())
def test_reads_match_listed_sizes_when_the_files_change_after_listing(case, data):
    """A bin listed, then its files rewritten or cut (an instrument still writing, a resync):
    each read gives the listed size or an FsError, never other bytes."""
    bin_id, files = case
    with tempfile.TemporaryDirectory() as tmp:
        write(tmp, bin_id, files)
        ns = Namespace(DataRoot(tmp), Options(cache_size=0))
        try:
            listed = [n for n in walk(ns) if not n.is_dir]
        except FsError:
            return
        for ext in ("hdr", "adc", "roi"):
            path = os.path.join(tmp, f"{bin_id}.{ext}")
            choice = data.draw(st.integers(0, 3))
            if choice == 1 and os.path.exists(path):
                os.truncate(path, data.draw(st.integers(0, os.path.getsize(path))))
            elif choice == 2:
                with open(path, "wb") as f:
                    f.write(data.draw(st.binary(max_size=2000)))
            elif choice == 3 and os.path.exists(path):
                os.remove(path)
        for node in listed:
            try:
                got = ns.read(node.ino)
            except FsError:
                continue
            assert len(got) == node.size, node.path
