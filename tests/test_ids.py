"""Bin and target identifiers, timestamps, instruments and day folders (SPEC section 1)."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.errors import BinError, IdentifierError
from ifcbfs.core.ids import (
    BinId, is_bin_id, parse_bin_id, parse_day_folder, parse_target_id, target_id, timestamp_iso,
)

UTC = timezone.utc


def test_d_style_bin_id():
    b = parse_bin_id("D20130526T095207_IFCB013")
    assert b == BinId("D20130526T095207_IFCB013", "D", 13, datetime(2013, 5, 26, 9, 52, 7, tzinfo=UTC))
    assert str(b) == "D20130526T095207_IFCB013"
    assert b.schema == "v2"
    assert b.timestamp.utcoffset() == timedelta(0)


def test_i_style_bin_id():
    b = parse_bin_id("IFCB5_2012_028_081515")
    assert b == BinId("IFCB5_2012_028_081515", "I", 5, datetime(2012, 1, 28, 8, 15, 15, tzinfo=UTC))
    assert b.schema == "v1"


@pytest.mark.parametrize("text, instrument", [
    ("D20220522T000439_IFCB134", 134),
    ("D20130526T095207_IFCB013", 13),
    ("D20130526T095207_IFCB0", 0),
    ("IFCB1_2006_157_181359", 1),
    ("IFCB14_2016_001_000000", 14),
    ("IFCB014_2016_001_000000", 14),
])
def test_instrument_number_is_the_integer_after_ifcb(text, instrument):
    assert parse_bin_id(text).instrument == instrument


@pytest.mark.parametrize("text, iso", [
    ("D20130526T095207_IFCB013", "2013-05-26T09:52:07Z"),
    ("D20200229T235959_IFCB122", "2020-02-29T23:59:59Z"),
    ("IFCB5_2012_028_081515", "2012-01-28T08:15:15Z"),
    ("IFCB1_2006_157_181359", "2006-06-06T18:13:59Z"),
    ("IFCB1_2012_060_000000", "2012-02-29T00:00:00Z"),  # leap year: day 60 is Feb 29
    ("IFCB1_2011_060_000000", "2011-03-01T00:00:00Z"),
    ("IFCB1_2012_366_235959", "2012-12-31T23:59:59Z"),
    ("IFCB1_2000_366_120000", "2000-12-31T12:00:00Z"),  # 2000 is a leap year (div. by 400)
    ("IFCB1_2011_001_000000", "2011-01-01T00:00:00Z"),
])
def test_utc_timestamps(text, iso):
    assert timestamp_iso(parse_bin_id(text)) == iso


@pytest.mark.parametrize("text", [
    "IFCB1_2011_366_000000",   # day 366 in a non-leap year
    "IFCB1_1900_366_000000",   # 1900 is not a leap year
    "IFCB1_2012_367_000000",
    "IFCB1_2012_000_000000",   # day of year is 1-based
    "IFCB1_2012_028_240000",   # hour 24
    "IFCB1_2012_028_006000",   # minute 60
    "IFCB1_2012_028_000060",   # second 60
    "D20130230T000000_IFCB013",  # Feb 30
    "D20130229T000000_IFCB013",  # Feb 29 in a non-leap year
    "D20131301T000000_IFCB013",  # month 13
    "D20130001T000000_IFCB013",  # month 0
    "D20130100T000000_IFCB013",  # day 0
    "D20130526T245959_IFCB013",
    "D20130526T095207_IFCB",     # no instrument number
    "D20130526T095207",
    "D20130526_IFCB013",
    "D2013526T095207_IFCB013",
    "d20130526t095207_ifcb013",
    " D20130526T095207_IFCB013",
    "D20130526T095207_IFCB013 ",
    "D20130526T095207_IFCB013\n",
    "D20130526T095207_IFCB013.hdr",
    "D20130526T095207_IFCB013_00001",
    "IFCB5_2012_28_081515",
    "IFCB5_12_028_081515",
    "IFCB_2012_028_081515",
    "IFCB5_2012_028_81515",
    "IFCB5_2012_028",
    "D\u0662\u0660\u0661\u06630526T095207_IFCB013",  # Arabic-Indic digits are not 0-9
    "D20130526T095207_IFCB\uff11\uff13",          # fullwidth digits
    "",
    "garbage",
    "../../etc/passwd",
])
def test_anything_else_is_a_clear_identifier_error(text):
    with pytest.raises(IdentifierError, match="bin id|not a valid|does not exist"):
        parse_bin_id(text)
    assert not is_bin_id(text)


@pytest.mark.parametrize("value", [None, 5, 3.0, b"D20130526T095207_IFCB013", ["D20130526T095207_IFCB013"]])
def test_non_str_is_an_identifier_error(value):
    for parse in (parse_bin_id, parse_target_id, parse_day_folder):
        with pytest.raises(IdentifierError):
            parse(value)
    assert not is_bin_id(value)


def test_identifier_error_is_a_bin_error_and_a_value_error():
    assert issubclass(IdentifierError, BinError) and issubclass(IdentifierError, ValueError)


def test_target_ids():
    assert target_id("D20130526T095207_IFCB013", 3) == "D20130526T095207_IFCB013_00003"
    assert target_id("IFCB5_2012_028_081515", 1) == "IFCB5_2012_028_081515_00001"
    assert target_id("IFCB5_2012_028_081515", 99999) == "IFCB5_2012_028_081515_99999"
    assert target_id("IFCB5_2012_028_081515", 123456) == "IFCB5_2012_028_081515_123456"
    b, n = parse_target_id("D20130526T095207_IFCB013_00003")
    assert (b, n) == (parse_bin_id("D20130526T095207_IFCB013"), 3)
    assert parse_target_id("IFCB5_2012_028_081515_123456")[1] == 123456


@pytest.mark.parametrize("target", [0, -1, "3", 3.0, None])
def test_bad_target_numbers(target):
    with pytest.raises(IdentifierError):
        target_id("D20130526T095207_IFCB013", target)


@pytest.mark.parametrize("text", [
    "D20130526T095207_IFCB013",          # a bin id, no target
    "D20130526T095207_IFCB013_0003",     # fewer than 5 digits
    "D20130526T095207_IFCB013_",
    "D20130526T095207_IFCB013_0000\u0663",
    "D20130230T095207_IFCB013_00003",    # Feb 30
    "X_00003",
    "",
])
def test_bad_target_ids(text):
    with pytest.raises(IdentifierError):
        parse_target_id(text)


@pytest.mark.parametrize("text, date", [
    ("D20130526", datetime(2013, 5, 26, tzinfo=UTC)),
    ("D20120229", datetime(2012, 2, 29, tzinfo=UTC)),
    ("IFCB5_2012_028", datetime(2012, 1, 28, tzinfo=UTC)),
    ("IFCB5_2012_366", datetime(2012, 12, 31, tzinfo=UTC)),
    ("IFCB1_2011_365", datetime(2011, 12, 31, tzinfo=UTC)),
])
def test_day_folders(text, date):
    assert parse_day_folder(text) == date


@pytest.mark.parametrize("text", [
    "D20130230", "D20130229", "D201305", "D2013", "2013", "D20130526T095207_IFCB013",
    "IFCB5_2011_366", "IFCB5_2012_000", "IFCB5_2012_367", "IFCB5_2012_28", "skip", "", "D2013052\u0666",
])
def test_bad_day_folders(text):
    with pytest.raises(IdentifierError, match="day folder|not a valid"):
        parse_day_folder(text)


@settings(max_examples=300, deadline=None)
@given(when=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)),
       instrument=st.integers(0, 999))
def test_ids_round_trip(when, instrument):
    when = when.replace(microsecond=0)
    d = f"D{when:%Y%m%dT%H%M%S}_IFCB{instrument:03d}"
    i = f"IFCB{instrument}_{when:%Y}_{when.timetuple().tm_yday:03d}_{when:%H%M%S}"
    for text, style in ((d, "D"), (i, "I")):
        b = parse_bin_id(text)
        assert (b.text, b.style, b.instrument) == (text, style, instrument)
        assert b.timestamp == when.replace(tzinfo=UTC)
        assert timestamp_iso(b) == f"{when:%Y-%m-%dT%H:%M:%S}Z"
        assert parse_target_id(target_id(text, 42)) == (b, 42)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.text(alphabet="DTIFCB_0123456789", max_size=30)))
def test_arbitrary_text_parses_or_raises_identifier_error(text):
    for parse in (parse_bin_id, parse_target_id, parse_day_folder):
        try:
            parse(text)
        except IdentifierError:
            pass
    try:
        b = parse_bin_id(text)
    except IdentifierError:
        return
    assert b.text == text and text.isascii() and b.style in ("D", "I")
