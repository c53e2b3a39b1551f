"""Header text to typed properties: the three variants of SPEC section 2, and the real headers."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.hdr import LEGACY_FIRST, V2_FIRST, parse_hdr, typed

TYPED = {"temperature": float, "humidity": float, "binarizeThreshold": int, "blobSizeThreshold": int}


def assert_properties(got: dict, expected: dict) -> None:
    """Every expected property present with the same value and type (extra properties allowed)."""
    missing = sorted(set(expected) - set(got))
    assert not missing, f"missing properties: {missing}"
    for key, value in expected.items():
        assert got[key] == value and type(got[key]) is type(value), (
            f"{key}: got {got[key]!r} ({type(got[key]).__name__}), expected {value!r} ({type(value).__name__})")


# --- a. key-value ---------------------------------------------------------------------------

KEY_VALUE = (
    "softwareVersion: Imaging FlowCytobot Acquisition Software version 1.1.5.19\r\n"
    "Housekeeping firmware version 31\r\n"           # no ': ': ignored
    "imagerID: 122\t\r\n"                            # tab after the value
    "PMTAhighVoltage: 0.450000\r\n"
    "runTime: 1196.926074\r\n"
    "triggerCount: -999\r\n"
    "hasCamera: True\r\n"
    "fans: False\r\n"
    "DataFilePath: C:\\Data\\NHLine_Discrete\\\r\n"
    "FileComment: Uto 2020: Lat 594652.952 Lon 212113.300\r\n"   # a second ': '
    "ADCFileFormat: trigger#, ADC_time, PMTA\r\n"
    "syringeOffset: 1\r\n"
    "syringeOffset: 8257\r\n"                        # duplicate: the later one wins
    "sampleTime: 2022-01-01T22:13:11Z\r\n"
    "bigFloat: 1e3\r\n"
    "notANumber: nan\r\n"
    "infinite: inf\r\n"
    "overflow: 1e400\r\n"
    "version: 1.1.5.19\r\n"
    "empty: \r\n"                                  # 'empty:' once trailing whitespace is gone: ignored
    "noSpace:5\r\n"                                  # no ': ': ignored
    ": no key\r\n"                                   # empty key: ignored
    "\r\n"
    "humidity: 1.159525\r\n"
    "temperature: 25\r\n"                            # temperature is always a float
    "binarizeThreshold: 4\r\n"
    "blobSizeThreshold: 30.0\r\n"                    # an int written as 30.0
    "\r\n\r\n"
)


def test_key_value_variant():
    props = parse_hdr(KEY_VALUE.encode())
    assert props == {
        "context": "softwareVersion: Imaging FlowCytobot Acquisition Software version 1.1.5.19",
        "imagerID": 122,
        "PMTAhighVoltage": 0.45,
        "runTime": 1196.926074,
        "triggerCount": -999,
        "hasCamera": True,
        "fans": False,
        "DataFilePath": "C:\\Data\\NHLine_Discrete\\",
        "FileComment": "Uto 2020: Lat 594652.952 Lon 212113.300",
        "ADCFileFormat": "trigger#, ADC_time, PMTA",
        "syringeOffset": 8257,
        "sampleTime": "2022-01-01T22:13:11Z",
        "bigFloat": 1000.0,
        "notANumber": "nan",
        "infinite": "inf",
        "overflow": "1e400",
        "version": "1.1.5.19",
        "humidity": 1.159525,
        "temperature": 25.0,
        "binarizeThreshold": 4,
        "blobSizeThreshold": 30,
    }
    for key, kind in TYPED.items():
        assert type(props[key]) is kind
    assert type(props["imagerID"]) is int and type(props["hasCamera"]) is bool


def test_key_value_line_endings_and_trailing_whitespace_do_not_matter():
    lf = KEY_VALUE.replace("\r\n", "\n")
    assert parse_hdr(lf.encode()) == parse_hdr(KEY_VALUE.encode())
    tabs = "".join(line.rstrip("\r\n") + "\t  \n" for line in lf.splitlines(True))
    assert parse_hdr(tabs.encode()) == parse_hdr(lf.encode())
    assert parse_hdr(b"SoftwareVersion: 2.0.0.0\nroiCount: 7") == {"context": "SoftwareVersion: 2.0.0.0", "roiCount": 7}


def test_key_value_bad_typed_properties_are_left_out():
    props = parse_hdr(b"softwareVersion: x\ntemperature: warm\nhumidity: True\n"
                      b"binarizeThreshold: 4.5\nblobSizeThreshold: False\n")
    assert props == {"context": "softwareVersion: x"}


def test_typed_values():
    assert typed("0.450000") == 0.45 and type(typed("0.450000")) is float
    assert typed("0.0") == 0.0 and type(typed("0.0")) is float
    assert typed("0") == 0 and type(typed("0")) is int
    assert typed("-12") == -12 and typed("+12") == 12
    assert typed(".5") == 0.5 and typed("5.") == 5.0 and typed("-1.5e-3") == -0.0015
    assert typed("True") is True and typed("False") is False
    for text in ("true", "FALSE", "1.2.3", "12 ", "0x10", "1_000", "nan", "NaN", "inf", "-inf", "1e999", "", "abc"):
        assert typed(text) == text


def test_a_value_with_more_digits_than_python_converts_stays_text():
    digits = "9" * 5000
    props = parse_hdr(f"softwareVersion: x\nroiCount: {digits}\nbinarizeThreshold: {digits}\n"
                      f"temperature: 1{'0' * 400}\n".encode())
    assert props == {"context": "softwareVersion: x", "roiCount": digits}
    json.dumps(props, allow_nan=False)


# --- b. legacy ------------------------------------------------------------------------------

def legacy(values: str | None, *, crlf: bool = True, extra: int = 0) -> bytes:
    lines = [LEGACY_FIRST, '"Heidi M. Sosik and Robert J. Olson"', '"Woods Hole Oceanographic Institution"']
    lines += [f'"Line {i}"' for i in range(extra)]
    lines += ['"SyringeStatus =  0"', '"Temp Humidity BinarizeThresh PMT1hv(ssc) PMT2hv(chl) BlobSizeThresh"']
    if values is not None:
        lines.append(values)
    eol = "\r\n" if crlf else "\n"
    return (eol.join(lines) + eol).encode()


CONTEXT = ("Imaging FlowCytobot Acquisition Software version 1.0; October 2005\n"
           "Heidi M. Sosik and Robert J. Olson\nWoods Hole Oceanographic Institution\nSyringeStatus =  0")


def test_legacy_six_values():
    props = parse_hdr(legacy('" 11.4799732421875"," 32.167437512207"," 30"," .675"," .6"," 10"'))
    assert props == {
        "context": CONTEXT,
        "temperature": 11.4799732421875,
        "humidity": 32.167437512207,
        "binarizeThreshold": 30,
        "scatteringPhotomultiplierSetting": 0.675,
        "fluorescencePhotomultiplierSetting": 0.6,
        "blobSizeThreshold": 10,
    }
    assert_properties(props, {"binarizeThreshold": 30, "blobSizeThreshold": 10, "temperature": 11.4799732421875})


def test_legacy_five_and_three_values_give_fewer_properties():
    five = parse_hdr(legacy('" 33.97"," 32.41"," 20"," .4"," .75"'))
    assert five == {"context": CONTEXT, "temperature": 33.97, "humidity": 32.41, "binarizeThreshold": 20,
                    "scatteringPhotomultiplierSetting": 0.4, "fluorescencePhotomultiplierSetting": 0.75}
    three = parse_hdr(legacy('" 20.928611328125"," 16.9670373535156"," 40"', crlf=False))
    assert three == {"context": CONTEXT, "temperature": 20.928611328125, "humidity": 16.9670373535156,
                     "binarizeThreshold": 40}


def test_legacy_integers_and_floats_keep_their_types():
    props = parse_hdr(legacy('"11","32","30.0",".675","1","10"'))
    assert_properties(props, {"temperature": 11.0, "humidity": 32.0, "binarizeThreshold": 30,
                              "scatteringPhotomultiplierSetting": 0.675,
                              "fluorescencePhotomultiplierSetting": 1.0, "blobSizeThreshold": 10})


def test_legacy_values_that_are_not_numbers_are_left_out():
    props = parse_hdr(legacy('"warm"," 32.1","thirty"," .675","",""'))
    assert props == {"context": CONTEXT, "humidity": 32.1, "scatteringPhotomultiplierSetting": 0.675}


def test_legacy_without_values():
    # fewer than 6 lines: context is all but the last two lines, no values
    text = (LEGACY_FIRST + '\r\n"Heidi M. Sosik and Robert J. Olson"\r\n"Woods Hole Oceanographic Institution"\r\n'
            '"Temp Humidity Binarize_thresh"\r\n').encode()
    assert parse_hdr(text) == {"context": "Imaging FlowCytobot Acquisition Software version 1.0; October 2005\n"
                                          "Heidi M. Sosik and Robert J. Olson"}


def test_legacy_with_more_context_lines():
    props = parse_hdr(legacy('"1.5","2.5"', extra=2))
    assert props["context"].split("\n")[3:5] == ["Line 0", "Line 1"]
    assert props["temperature"] == 1.5 and props["humidity"] == 2.5


# --- c. version 2.0 with sample date --------------------------------------------------------

def test_v2_with_sample_date():
    text = (V2_FIRST + "\r\n"
            "Sample Date 4/1/2011 10:12:13 AM\r\n"
            "Sample Volume 5 ml\r\n"
            "run time = 1200.5 s  inhibit time = 12.25 s\r\n"
            "24.5 temperature, 38.75 humidity\t\r\n")
    props = parse_hdr(text.encode())
    assert props == {"context": V2_FIRST, "runTime": 1200.5, "inhibitTime": 12.25,
                     "temperature": 24.5, "humidity": 38.75}


def test_v2_temperature_is_a_float_even_when_written_as_an_integer():
    props = parse_hdr(f"{V2_FIRST}\nSample Date x\n24 temperature, 38 humidity\n".encode())
    assert_properties(props, {"temperature": 24.0, "humidity": 38.0})


def test_v2_without_sample_date_has_only_its_context():
    text = (V2_FIRST + "\nSomething else\nrun time = 1200.5 s  inhibit time = 12.25 s\n"
            "24.5 temperature, 38.75 humidity\n")
    assert parse_hdr(text.encode()) == {"context": V2_FIRST}
    assert parse_hdr(V2_FIRST.encode()) == {"context": V2_FIRST}


# --- empty and unknown ----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n\r\n", b"  \t\n\n", b"\t"])
def test_empty_header_has_no_properties(data):
    assert parse_hdr(data) == {}


def test_unknown_first_line_gives_only_a_context():
    assert parse_hdr(b"something else\nkey: value\n") == {"context": "something else"}


def test_invalid_utf8_is_replaced_not_fatal():
    props = parse_hdr(b"softwareVersion: \xff\xfe\noperator: J\xc3\xb6rg\nbad: \x80\n")
    assert props == {"context": "softwareVersion: \ufffd\ufffd", "operator": "J\u00f6rg", "bad": "\ufffd"}


# --- conformance with the real headers ------------------------------------------------------

def real_headers(ifcb_data, expected):
    for bin_id, exp in expected["bins"].items():
        yield ifcb_data / "bins" / bin_id / f"{bin_id}.hdr", exp["header"]
    for name, exp in expected["headers"].items():
        yield ifcb_data / "headers" / name, exp


def test_every_real_header_has_the_expected_properties(ifcb_data, expected):
    checked = 0
    for path, exp in real_headers(ifcb_data, expected):
        props = parse_hdr(path.read_bytes())
        assert_properties(props, exp)
        # and they survive hdr.json's JSON unchanged, types included
        assert_properties(json.loads(json.dumps(props, allow_nan=False)), exp)
        checked += 1
    assert checked == len(expected["bins"]) + len(expected["headers"]) >= 24


def test_every_file_in_headers_is_in_expected(ifcb_data, expected):
    assert sorted(p.name for p in (ifcb_data / "headers").glob("*.hdr")) == sorted(expected["headers"])


# --- properties -----------------------------------------------------------------------------

FIRST_LINES = [
    b"softwareVersion: x", b"SoftwareVersion: 2.0.0.0", LEGACY_FIRST.encode(), V2_FIRST.encode(),
    V2_FIRST.encode() + b"\nSample Date 1/1/2011",
]
FRAGMENTS = [
    "temperature: ", "humidity: ", "binarizeThreshold: ", "blobSizeThreshold: ", "key: ", ": ", "run time = ",
    " s  inhibit time = ", " temperature, ", " humidity", '"', '","', ",", "\r\n", "\n", "\t", " ", "True",
    "False", "0.450000", "1e400", "-999", ".5", "nan", "9" * 30, "\u00e9", "\ufffd",
]


def check_properties(props) -> None:
    assert isinstance(props, dict)
    for key, value in props.items():
        assert isinstance(key, str) and type(value) in (int, float, bool, str)
        if type(value) is float:
            assert math.isfinite(value)
    for key, kind in TYPED.items():
        if key in props:
            assert type(props[key]) is kind
    json.dumps(props, allow_nan=False)   # hdr.json can always be written


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_give_documented_properties(data):
    # parse_hdr never raises: an unreadable header gives fewer properties
    check_properties(parse_hdr(data))


@settings(max_examples=400, deadline=None)
@given(first=st.sampled_from(FIRST_LINES),
       body=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40))
def test_structured_headers_only_give_documented_properties(first, body):
    data = (first + b"\n" + "".join(body).encode("utf-8", "surrogatepass")).replace(b"\r", b"")
    props = parse_hdr(data)
    check_properties(props)
    assert parse_hdr(data.replace(b"\n", b"\r\n")) == props
