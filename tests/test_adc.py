"""ADC bytes to image records and canonical adc.csv rows (SPEC sections 3 and 7)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.adc import COLUMNS, V1_COLUMNS, V2_COLUMNS, Adc, Roi, _parse_plain, parse_adc, parse_lines

HEADER = {
    "v1": b"roi_number,trigger,processingEndTime,fluorescenceLow,fluorescenceHigh,scatteringLow,"
          b"scatteringHigh,comparatorPulse,triggerOpenTime,frameGrabTime,roiX,roiY,roiWidth,roiHeight,"
          b"startByte,valveStatus\n",
    "v2": b"roi_number,trigger,adcTime,pmtA,pmtB,pmtC,pmtD,peakA,peakB,peakC,peakD,timeOfFlight,"
          b"grabTimeStart,grabTimeEnd,roiX,roiY,roiWidth,roiHeight,startByte,comparatorOut,startPoint,"
          b"signalLength,status,runTime,inhibitTime\n",
}


def v1(trigger, x, y, w, h, start, *, trailing=True) -> str:
    """A v1 line as the old instruments write it (15 fields, usually a trailing comma)."""
    fields = [trigger, "0.12345", "0.0012", "0.0234", "0.1", "0.2", "0", "0.5", "0.0625", x, y, w, h, start, "0"]
    return ",".join(str(f) for f in fields) + ("," if trailing else "")


def v2(trigger, x, y, w, h, start) -> str:
    """A v2 line (24 fields)."""
    fields = [trigger, "4.6321", "0.0189", "0.0044", "0.0000", "0.0000", "0.0213", "0.0046", "0.0000", "0.0000",
              "35", "4.6338", "4.6344", x, y, w, h, start, "0", "12", "28", "0", "4.6249", "0.1210"]
    return ",".join(str(f) for f in fields)


def test_canonical_column_names():
    assert len(V1_COLUMNS) == 15 and len(V2_COLUMNS) == 24
    assert COLUMNS == {"v1": V1_COLUMNS, "v2": V2_COLUMNS}
    for schema in ("v1", "v2"):
        assert parse_adc(b"", schema).csv == HEADER[schema]


def test_v1_with_trailing_commas():
    data = "\n".join([v1(1, 10, 20, 30, 40, 0), v1(2, 0, 0, 0, 0, 1200), v1(2, 5, 6, 7, 8, 1200)]) + "\n"
    adc = parse_adc(data.encode(), "v1")
    assert (adc.schema, adc.n_triggers, adc.skipped) == ("v1", 3, 0)
    assert adc.rois == (Roi(1, 1, 10, 20, 30, 40, 0), Roi(3, 2, 5, 6, 7, 8, 1200))
    assert adc.csv == HEADER["v1"] + (
        b"1,1,0.12345,0.0012,0.0234,0.1,0.2,0,0.5,0.0625,10,20,30,40,0,0\n"
        b"2,2,0.12345,0.0012,0.0234,0.1,0.2,0,0.5,0.0625,0,0,0,0,1200,0\n"
        b"3,2,0.12345,0.0012,0.0234,0.1,0.2,0,0.5,0.0625,5,6,7,8,1200,0\n")
    assert adc.rois[0].end == 1200


def test_v1_without_trailing_comma_is_the_same():
    with_comma = "\n".join(v1(t, t, t, 3, 4, 12 * t) for t in range(1, 4)) + "\n"
    without = "\n".join(v1(t, t, t, 3, 4, 12 * t, trailing=False) for t in range(1, 4)) + "\n"
    assert parse_adc(with_comma.encode(), "v1") == parse_adc(without.encode(), "v1")


def test_v2():
    data = "\n".join([v2(1, 0, 0, 0, 0, 0), v2(2, 1104, 664, 48, 32, 0), v2(3, 0, 0, 0, 0, 1536),
                      v2(4, 552, 280, 96, 64, 1536)]) + "\n"
    adc = parse_adc(data.encode(), "v2")
    assert adc.schema == "v2" and adc.n_triggers == 4 and adc.skipped == 0
    assert adc.rois == (Roi(2, 2, 1104, 664, 48, 32, 0), Roi(4, 4, 552, 280, 96, 64, 1536))
    rows = adc.csv.split(b"\n")
    assert rows[0] + b"\n" == HEADER["v2"]
    assert rows[2] == b"2,2,4.6321,0.0189,0.0044,0.0000,0.0000,0.0213,0.0046,0.0000,0.0000,35,4.6338,4.6344," \
                      b"1104,664,48,32,0,0,12,28,0,4.6249,0.1210"
    assert rows[-1] == b"" and len(rows) == 6


@pytest.mark.parametrize("schema, line", [("v1", v1), ("v2", v2)])
def test_lf_and_crlf_give_the_same_result(schema, line):
    lines = [line(t, 3 * t, 2 * t, 10 + t, 5 + t, 100 * t) for t in range(1, 6)]
    lf = parse_adc(("\n".join(lines) + "\n").encode(), schema)
    crlf = parse_adc(("\r\n".join(lines) + "\r\n").encode(), schema)
    assert lf == crlf and len(lf.rois) == 5
    assert b"\r" not in crlf.csv


def test_target_is_the_one_based_line_number():
    lines = [v1(1, 0, 0, 0, 0, 0), "this line does not parse", "", v1(3, 1, 2, 3, 4, 0), "  ", v1(4, 5, 6, 7, 8, 12)]
    adc = parse_adc("\n".join(lines).encode() + b"\n", "v1")
    assert [(r.target, r.trigger) for r in adc.rois] == [(4, 3), (6, 4)]
    assert [row.split(b",")[0] for row in adc.csv.splitlines()[1:]] == [b"1", b"4", b"6"]
    assert adc.n_triggers == 3 and adc.skipped == 1


def test_fields_are_kept_exactly_as_written_without_whitespace():
    line = " 7 , 0.450000 ,-999,1e3,\t0x1F , , abc,0.5,0.0625, 10 ,20,30,40 , 0,0 ,\r\n"
    adc = parse_adc(line.encode(), "v1")
    assert adc.csv == HEADER["v1"] + b"1,7,0.450000,-999,1e3,0x1F,,abc,0.5,0.0625,10,20,30,40,0,0\n"
    assert adc.rois == (Roi(1, 7, 10, 20, 30, 40, 0),)


def test_only_the_single_trailing_empty_field_is_dropped():
    adc = parse_adc(b"1,2,3,,\n", "v1")
    assert adc.csv == HEADER["v1"] + b"1,1,2,3,\n"


@pytest.mark.parametrize("x, y, w, h, start", [
    (1, 2, 0, 5, 0),          # zero width: no image (normal: most lines of a bin)
    (1, 2, 5, 0, 0),
    (1, 2, -5, 5, 0),         # negative sizes
    (1, 2, 5, -5, 0),
    (1, 2, -5, -5, 0),
    (1, 2, 5, 5, -1),         # negative offset
    (1, 2, 5, 5, "1.5"),      # not integers
    (1, 2, "5.0", 5, 0),
    (1, "", 5, 5, 0),
    ("x", 2, 5, 5, 0),
    (1, 2, 5, 5, ""),
    (1, 2, 100000, 100000, 0),  # absurd: no MemoryError, no image
    (1, 2, 10 ** 30, 1, 0),
    (1, 2, 1, 10 ** 30, 0),
    (1, 2, 40000, 2, 0),
])
def test_lines_without_an_image_still_give_a_row(x, y, w, h, start):
    adc = parse_adc((v1(1, x, y, w, h, start) + "\n").encode(), "v1")
    assert adc.rois == () and adc.n_triggers == 1 and adc.skipped == 0
    assert adc.csv.count(b"\n") == 2


def test_lines_that_do_not_parse_are_skipped_never_fatal():
    lines = [b"garbage", b"1.5," + v1(1, 1, 1, 1, 1, 0).encode()[2:], b"\xff\xfe" + v1(9, 1, 1, 1, 1, 0).encode(),
             v1(2, 1, 1, 2, 2, 0).encode(), b",,,,", b"abc,1,2,3", b"3,short line", b"\x00" * 20, b"4"]
    adc = parse_adc(b"\n".join(lines) + b"\n", "v1")
    assert adc.rois == (Roi(4, 2, 1, 1, 2, 2, 0),)
    assert [row.split(b",", 1)[0] for row in adc.csv.splitlines()[1:]] == [b"4", b"7", b"9"]
    assert adc.skipped == 6 and adc.n_triggers == 3


def test_a_trigger_of_more_digits_than_python_converts_is_a_skipped_line():
    adc = parse_adc(("9" * 5000 + "," + v2(1, 1, 1, 1, 1, 0)[2:] + "\n" + v2(2, 1, 1, 1, 1, 0) + "\n").encode(), "v2")
    assert adc.n_triggers == 1 and adc.skipped == 1 and [r.trigger for r in adc.rois] == [2]


def test_columns_of_the_rows_or_none_when_a_line_is_short():
    lines = [v1(1, 1, 2, 3, 4, 0), "2,0.5,0.25", "garbage", v1(3, 5, 6, 7, 8, 12, trailing=False)]
    adc = parse_adc(("\r\n".join(lines) + "\r\n").encode(), "v1")
    assert adc.columns(0) == [["1", "2", "3"]] and adc.columns(0, 1) == [["1", "2", "3"], ["0.12345", "0.5", "0.12345"]]
    assert adc.columns(7, 0) is None                  # line 2 has no field 7
    full = parse_adc((v1(1, 1, 2, 3, 4, 0) + "\n" + v1(3, 5, 6, 7, 8, 12, trailing=False) + "\n").encode(), "v1")
    assert full.columns(8, 7, 0) == [["0.0625", "0.0625"], ["0.5", "0.5"], ["1", "3"]]
    assert full.columns(14) == [["0", "0"]] and full.columns(15) is None   # a trailing comma is no field
    assert parse_adc(b"", "v2").columns(1, 23) == [[], []]


def test_nonnegative_coordinates_are_not_required():
    # x and y only place a ROI on the camera frame; the SPEC asks only that they are integers
    adc = parse_adc((v2(1, -3, -4, 5, 6, 0) + "\n").encode(), "v2")
    assert adc.rois == (Roi(1, 1, -3, -4, 5, 6, 0),)


@pytest.mark.parametrize("schema, line", [("v1", v1), ("v2", v2)])
def test_unterminated_last_line_cut_before_the_field_after_the_start_byte(schema, line):
    full = line(2, 10, 20, 30, 40, 1200)
    fields = full.split(",")
    after_start = {"v1": 14, "v2": 18}[schema]   # index of the field after the start byte
    head = line(1, 1, 2, 3, 4, 0) + "\n"
    for cut in (",".join(fields[:after_start]),            # ends with the start byte: may be incomplete
                ",".join(fields[:after_start]) + ",",      # comma written, next field not yet
                ",".join(fields[:after_start])[:-2],       # start byte cut in the middle
                ",".join(fields[:5])):
        adc = parse_adc((head + cut).encode(), schema)
        assert [r.target for r in adc.rois] == [1], cut
        assert adc.n_triggers == 1 and adc.skipped == 1
    # once the field after the start byte is there, the image's fields are final: it has an
    # image, but no adc.csv row until its newline (its last field may still grow)
    adc = parse_adc((head + ",".join(fields[:after_start + 1])).encode(), schema)
    assert [r.target for r in adc.rois] == [1, 2] and adc.n_triggers == 1 and adc.skipped == 0
    assert adc.csv.count(b"\n") == 2
    # the same short line with its newline is complete: it has an image and a row
    adc = parse_adc((head + ",".join(fields[:after_start]) + "\n").encode(), schema)
    assert [r.target for r in adc.rois] == [1, 2] and adc.n_triggers == 2


def test_unterminated_complete_last_line_counts():
    data = (v1(1, 1, 2, 3, 4, 0) + "\n" + v1(2, 5, 6, 7, 8, 12)).encode()
    assert [r.target for r in parse_adc(data, "v1").rois] == [1, 2]


@pytest.mark.parametrize("schema, line", [("v1", v1), ("v2", v2)])
def test_once_final_an_unterminated_last_line_gets_its_row(schema, line):
    """A bin that has settled will never get the newline: its last line is a line like any other."""
    head = line(1, 1, 2, 3, 4, 0) + "\n"
    whole = (head + line(2, 5, 6, 7, 8, 12)).encode()
    growing, final = parse_adc(whole, schema), parse_adc(whole, schema, final=True)
    assert growing.unfinished and not final.unfinished
    assert (growing.n_triggers, final.n_triggers) == (1, 2)
    assert final.csv == parse_adc(whole + b"\n", schema).csv
    assert final.rois == growing.rois and [r.target for r in final.rois] == [1, 2]
    # a last line cut before the field after the start byte gets its row, never an image
    # (its start byte may be cut short)
    after_start = {"v1": 14, "v2": 18}[schema]
    cut = (head + ",".join(line(2, 10, 20, 30, 40, 1200).split(",")[:after_start])[:-2]).encode()
    adc = parse_adc(cut, schema, final=True)
    assert adc.n_triggers == 2 and [r.target for r in adc.rois] == [1] and adc.skipped == 0
    assert parse_adc(cut, schema).unfinished
    # a file that ends with its newline is the same either way, and never unfinished
    done = whole + b"\n"
    assert parse_adc(done, schema) == parse_adc(done, schema, final=True)
    assert not parse_adc(done, schema).unfinished and not parse_adc(b"", schema).unfinished


def test_empty_and_blank_files():
    for data in (b"", b"\n", b"\r\n\r\n", b"   \n\t\n"):
        adc = parse_adc(data, "v2")
        assert (adc.schema, adc.n_triggers, adc.rois, adc.csv, adc.skipped) == ("v2", 0, (), HEADER["v2"], 0)


def test_real_bins_parse_without_skipped_lines(ifcb_data, expected):
    for bin_id in expected["bins"]:
        schema = "v2" if bin_id.startswith("D") else "v1"
        data = (ifcb_data / "bins" / bin_id / f"{bin_id}.adc").read_bytes()
        adc = parse_adc(data, schema)
        assert adc.skipped == 0
        assert adc.n_triggers == len(data.splitlines())
        for row in adc.csv.splitlines()[1:]:
            assert len(row.split(b",")) == len(COLUMNS[schema]) + 1


# --- properties -----------------------------------------------------------------------------

def check_adc(adc: Adc, data: bytes, schema: str) -> None:
    n_lines = data.count(b"\n") + 1
    assert adc.schema == schema
    assert adc.csv_size == len(adc.csv)   # the size is known without building adc.csv
    rows = adc.csv.split(b"\n")
    assert rows[0] + b"\n" == HEADER[schema] and rows[-1] == b""
    rows = rows[1:-1]
    assert len(rows) == adc.n_triggers
    assert adc.csv.isascii() and b"\r" not in adc.csv
    numbers = [int(row.split(b",", 1)[0]) for row in rows]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= n_lines for n in numbers)
    targets = [r.target for r in adc.rois]
    assert targets == sorted(set(targets)) and set(targets) <= set(numbers)
    for r in adc.rois:
        assert r.width > 0 and r.height > 0 and r.start >= 0 and r.width * r.height <= 1 << 24
    assert adc.skipped >= 0


FIELD = st.one_of(st.integers(-5, 70).map(str), st.sampled_from(["", " ", "1.5", "x", "-0", "99999999999", "\r"]))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), schema=st.sampled_from(["v1", "v2"]), final=st.booleans())
def test_arbitrary_bytes_only_give_documented_outcomes(data, schema, final):
    adc = parse_adc(data, schema, final)    # never raises
    check_adc(adc, data, schema)
    assert parse_adc(data.replace(b"\n", b"\r\n"), schema, final) == adc


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.lists(FIELD, min_size=1, max_size=26), max_size=12),
       schema=st.sampled_from(["v1", "v2"]), eol=st.sampled_from(["\n", "\r\n"]), ended=st.booleans(),
       final=st.booleans())
def test_structured_lines_only_give_documented_outcomes(lines, schema, eol, ended, final):
    data = (eol.join(",".join(fields) for fields in lines) + (eol if ended else "")).encode()
    adc = parse_adc(data, schema, final)
    check_adc(adc, data, schema)
    if final:  # settled: the rows are those of the same file with its last newline
        assert adc.rows == parse_adc(data + eol.encode(), schema).rows
    ix = {"v1": 9, "v2": 13}[schema]
    for r in adc.rois:   # every image record is its line's fields, as the SPEC places them
        fields = [f.strip() for f in lines[r.target - 1]]
        assert [int(f) for f in fields[ix:ix + 5]] == [r.x, r.y, r.width, r.height, r.start]
        assert int(fields[0]) == r.trigger


ALIKE = st.one_of(st.integers(-3, 40).map(str), st.sampled_from(["0", "00", "1.5", "x", "", "99999999", "+7"]))


@st.composite
def alike_lines(draw):
    """ADC text whose lines all have as many fields (the fast path's case), or nearly so."""
    width = draw(st.integers(1, 26))
    rows = draw(st.lists(st.lists(ALIKE, min_size=width, max_size=width), min_size=1, max_size=10))
    if draw(st.booleans()) and len(rows) > 1:  # one line with another number of fields
        rows[draw(st.integers(0, len(rows) - 1))].append("5")
    comma = draw(st.sampled_from(["", ",", "mixed"]))
    ends = [("," if comma == "," or comma == "mixed" and i % 2 else "") for i in range(len(rows))]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return "".join(",".join(row) + end + eol for row, end in zip(rows, ends)).encode()


@settings(max_examples=400, deadline=None)
@given(data=alike_lines(), schema=st.sampled_from(["v1", "v2"]))
def test_the_fast_path_gives_what_parsing_line_by_line_gives(data, schema):
    fast, slow = _parse_plain(data, schema), parse_lines(data, schema)
    assert parse_adc(data, schema) == slow
    if fast is not None:
        assert fast == slow and fast.rows == slow.rows and fast.csv == slow.csv
        for indexes in ((0,), (1, 22, 23), (7, 8), (3,), (30,)):
            assert fast.columns(*indexes) == slow.columns(*indexes)


def test_real_files_take_the_fast_path_with_the_same_result(ifcb_data):
    for path in sorted(ifcb_data.glob("bins/*/*.adc")):
        schema = "v1" if path.name.startswith("IFCB") else "v2"
        data = path.read_bytes()
        fast = _parse_plain(data, schema)
        assert fast is not None and fast == parse_lines(data, schema), path
        assert fast.columns(0, 1, 22, 23) == parse_lines(data, schema).columns(0, 1, 22, 23)


def test_hypothesis_replays_no_saved_example():
    """A run never fails because of an example an earlier run saved (tests/conftest.py)."""
    assert settings.default.database is None
    assert settings(max_examples=5).database is None
