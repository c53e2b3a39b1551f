"""Volume analyzed and bin metrics in hdr.json (SPEC section 8): the real bins against the
established tools' values, and every branch of the algorithm on hand-made ADC lines."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ifcbfs.core.adc import parse_adc
from ifcbfs.core.bin import Bin
from ifcbfs.core.hdr import parse_hdr
from ifcbfs.core.ids import parse_bin_id
from ifcbfs.core.metrics import KEYS, Times, bin_metrics, choose, min_gap
from ifcbfs.core.source import DataRoot
from ifcbfs.core.stitch import find_pairs

D_ID = "D20240601T000000_IFCB124"
I_ID = "IFCB5_2012_028_081515"
NO_HEADER: dict = {}
# what ifcb-analysis's rule chose for the real bins (expected-metrics.json gives the numbers)
RULES = {"D20130526T095207_IFCB013": "adc run time, header inhibit time", "IFCB5_2012_028_081515": "adc",
         "no-roi": "adc", "D20150411T205456_IFCB012": "header", "D20130101T101010_IFCB099": None,
         "IFCB5_2006_001_121212": None, "IFCB5_2017_001_033645": None}


def v2(trigger, adc_time, run, inhibit, *, width=0) -> str:
    """A v2 line with the ADC time, run time and inhibit time given (an image when width > 0)."""
    fields = [trigger, adc_time] + ["0"] * 11 + [0, 0, width, width, 0] + ["0"] * 4 + [run, inhibit]
    return ",".join(map(str, fields))


def v1(trigger, open_, grab, *, box=(0, 0, 0, 0)) -> str:
    """A v1 line with the trigger open and frame grab times given, and a trailing comma."""
    return ",".join(map(str, [trigger, "0.5"] + ["0"] * 5 + [open_, grab, *box, 0, 0])) + ","


def metrics(lines, bin_id=D_ID, header=NO_HEADER, eol="\n") -> dict:
    """The metrics of a bin of these ADC lines, stitched as Bin stitches (I-style only)."""
    bid = parse_bin_id(bin_id)
    adc = parse_adc("".join(line + eol for line in lines).encode(), bid.schema)
    pairs = [(a.target, b.target) for a, b in find_pairs(adc.rois)] if bid.style == "I" else []
    return bin_metrics(bid, header, adc, pairs)


def close(ours, ref) -> bool:
    if ref is None or ours is None:
        return ours is ref
    return math.isclose(ours, ref, rel_tol=1e-9, abs_tol=0.0) and type(ours) is type(ref)


# --- the real bins --------------------------------------------------------------------
def test_real_bins_match_the_established_tools(ifcb_data, expected):
    reference = json.loads((ifcb_data / "expected-metrics.json").read_text())
    checked = []
    for group in ("bins", "odd"):
        for name, ref in reference[group].items():
            (files,) = DataRoot(str(ifcb_data / group / name)).scan("").bins.values()
            doc = json.loads(Bin.load(files).read("hdr.json"))
            for key, value in ref.items():
                assert close(doc[key], value), (name, key, doc[key], value)
            assert doc["ml_analyzed_rule"] == RULES.get(name, "header"), name
            if group == "bins":
                assert doc["stitched"] == expected["bins"][name]["stitched_pairs"]
            else:   # a bin without .roi still has its pairs: they come from the ADC
                assert doc["stitched"] == ([[3, 4]] if name == "no-roi" else [])
            checked.append(name)
    on_disk = [p.name for g in ("bins", "odd") for p in (ifcb_data / g).iterdir() if p.is_dir()]
    assert sorted(checked) == sorted(on_disk)


def test_hdr_json_keeps_its_keys_and_appends_the_metrics_in_order(ifcb_data):
    (files,) = DataRoot(str(ifcb_data / "bins" / I_ID)).scan("").bins.values()
    b = Bin.load(files)
    doc = json.loads(b.hdr_json)
    assert list(doc) == ["bin_id", "timestamp", "instrument", "schema", "n_triggers", "n_images", "header", *KEYS]
    assert doc["stitched"] == [[3, 4]] and doc["n_images_adc"] == doc["n_images"] == 5
    assert b.by_name["hdr.json"].size == len(b.read("hdr.json"))
    assert '"look_time": 0.8139530000000001,' in b.hdr_json.decode()   # floats as Python's repr


# --- D-style ADC estimate -------------------------------------------------------------
def test_v2_plain_lines_use_the_last_run_and_inhibit_time():
    m = metrics([v2(1, 1.0, 1.5, 0.25), v2(2, 2.0, 2.5, 0.5), v2(3, 300.0, 300.5, 0.75, width=8)])
    assert (m["run_time"], m["inhibit_time"], m["look_time"]) == (300.5, 0.75, 299.75)
    assert m["ml_analyzed"] == m["ml_analyzed_adc"] == 0.25 * 299.75 / 60
    assert m["ml_analyzed_header"] is None and m["ml_analyzed_rule"] == "adc"
    assert (m["last_trigger"], m["n_images_adc"], m["stitched"]) == (3, 1, [])
    assert m["trigger_frequency"] == 3 / 300.5 and m["concentration"] == 1 / m["ml_analyzed"]


def test_v2_clock_offsets():
    # the second line's run time is 100 s ahead of its ADC time: both clocks carry an offset
    lines = [v2(i + 1, i + 1.0, i + 101.0, 40.0 + 0.5 * i) for i in range(6)]
    m = metrics(lines)
    step = 0.5
    assert m["run_time"] == 106.0 - 100.0
    assert m["inhibit_time"] == 42.5 - (40.5 + 2 * step)
    # an offset of exactly 10 s is not one
    m = metrics([v2(i + 1, i + 1.0, i + 11.0, 0.5 * (i + 1)) for i in range(3)])
    assert (m["run_time"], m["inhibit_time"]) == (13.0, 1.5)


def test_v2_bad_inhibit_lines_count_one_step_each():
    inhibit = [0.25, 0.5, 0.75, 0.0, 1.25, 9.0, 1.75, 2.0]
    # line 4: 0 (bad); 5: up from 0 by 1.25 (good); 6: a jump of 7.75 (bad); 7: down 7.25 (bad)
    m = metrics([v2(i + 1, i + 1.0, i + 1.0, v) for i, v in enumerate(inhibit)])
    # good inhibit times 0.25, 0.5, 0.75, 1.25, 2.0: steps .25 .25 .5 .75, most common .25
    assert m["inhibit_time"] == 2.0 + 3 * 0.25
    # a small drop (> -0.1) is still good; the first line is good whatever it holds
    m = metrics([v2(i + 1, i + 1.0, i + 1.0, v) for i, v in enumerate([0.0, 0.5, 0.45, 1.0, 1.5, 2.0])])
    assert m["inhibit_time"] == 2.0
    # a rise of exactly 5 s is bad
    m = metrics([v2(i + 1, i + 1.0, i + 1.0, v) for i, v in enumerate([0.25, 0.5, 5.5, 5.75])])
    assert m["inhibit_time"] == 5.75 + 0.25


def test_v2_step_ties_go_to_the_smallest_and_steps_are_rounded_to_4_decimals():
    inhibit = [1.0, 1.5, 2.0, 2.25, 2.5, 0.0]   # steps .5 .5 .25 .25, then one bad line
    m = metrics([v2(i + 1, i + 1.0, i + 1.0, v) for i, v in enumerate(inhibit)])
    assert m["inhibit_time"] == 2.5 + 0.25
    inhibit = [1.0, 1.25, 1.5, 2.00001, 2.5, 3.0, 0.0]   # .25 twice, then .50001 .49999 .5: all .5
    m = metrics([v2(i + 1, i + 1.0, i + 1.0, v) for i, v in enumerate(inhibit)])
    assert m["inhibit_time"] == 3.0 + 0.5


def test_v2_run_time_cross_check_with_the_median_offset_of_the_first_50_lines():
    lines = [v2(1, 1.0, 1.5, 0.25), v2(2, 2.0, 2.5, 0.5), v2(3, 3.0, 3.5, 0.75), v2(4, 4.0, 99.0, 1.0)]
    assert metrics(lines)["run_time"] == 4.0 + 0.5   # the last run time is off: ADC time + median
    lines[-1] = v2(4, 4.0, 4.625, 1.0)                # within 0.2 s of that: kept
    assert metrics(lines)["run_time"] == 4.625
    # 50 lines 0.5 s ahead, then 60 lines 2 s ahead: only the first 50 count
    lines = [v2(i + 1, float(i + 1), i + 1 + (0.5 if i < 50 else 2.0), 0.25 * (i + 1)) for i in range(110)]
    assert metrics(lines)["run_time"] == 110.0 + 0.5


def test_v2_every_inhibit_time_zero_or_one_line_or_short_lines_give_no_adc_estimate():
    header = {"runTime": 1200.0, "inhibitTime": 20.0}
    for lines in ([v2(1, 1.0, 1.0, 0), v2(2, 2.0, 2.0, 0)],                 # every inhibit time 0
                  [v2(1, 1.0, 1.5, 0.25)],                                # one line
                  [v2(1, 1.0, 1.5, 0.25), ",".join(v2(2, 2.0, 2.5, 0.5).split(",")[:22])],
                  [",".join(v2(i, 1.0, 1.5, 0.25).split(",")[:20]) for i in (1, 2, 3)]):
        m = metrics(lines, header=header)
        assert m["ml_analyzed_adc"] is None, lines
        assert m["ml_analyzed"] == m["ml_analyzed_header"] == 0.25 * 1180.0 / 60
        assert m["ml_analyzed_rule"] == "header" and m["run_time"] == 1200.0
        assert metrics(lines)["ml_analyzed"] is None   # and with no header, nothing


def test_v2_text_that_is_not_a_number_gives_null_never_an_error():
    lines = [v2(1, 1.0, 1.5, 0.25), v2(2, "x", "nan", "inf"), v2(3, 3.0, "", 0.75)]
    m = metrics(lines)
    assert json.dumps(m, allow_nan=False) and m["last_trigger"] == 3
    assert m["ml_analyzed_adc"] is None and m["trigger_frequency"] is None


# --- the header estimate and the rule ---------------------------------------------------
def test_header_without_run_time_uses_the_adc_estimate():
    lines = [v2(1, 1.0, 1.5, 0.25), v2(2, 2.0, 2.5, 0.5)]
    for header in ({}, {"inhibitTime": 0.5}, {"runTime": "n/a", "inhibitTime": 0.5},
                   {"runTime": True, "inhibitTime": 0.5}):
        m = metrics(lines, header=header)
        assert m["ml_analyzed_header"] is None and m["ml_analyzed_rule"] == "adc"
        assert m["ml_analyzed"] == m["ml_analyzed_adc"] == 0.25 * (2.5 - 0.5) / 60


def test_header_keys_match_without_case_and_the_v2_legacy_line_counts():
    lines = [v2(1, 599.0, 600.0, 0.25), v2(2, 600.0, 601.0, 0.5)]
    m = metrics(lines, header={"RunTime": 600, "InhibitTime": 0.5})
    assert m["ml_analyzed_rule"] == "header" and m["look_time"] == 599.5
    legacy = parse_hdr(b"Imaging FlowCytobot Acquisition Software version 2.0; May 2010\n"
                       b"Sample Date: 5/26/2010 9:52:07 AM\n"
                       b"run time = 600.5 s  inhibit time = 0.5 s\n")
    m = metrics(lines, header=legacy)
    assert m["ml_analyzed_header"] == 0.25 * 600.0 / 60 and m["ml_analyzed_rule"] == "header"


@pytest.mark.parametrize("header, adc, times, rule", [
    (Times.of(100.0, 10.0), Times.of(100.5, 10.1), Times.of(100.0, 10.0), "header"),
    (Times.of(98.0, 10.2), Times.of(100.0, 10.0), Times.of(98.0, 10.2), "header"),   # 0.98 and 1.02 are in
    (Times.of(110.0, 10.0), Times.of(100.0, 10.0), Times.of(100.0, 10.0), "adc run time, header inhibit time"),
    (Times.of(100.0, 12.0), Times.of(100.0, 10.0), Times.of(100.0, 10.0), "header run time, adc inhibit time"),
    (Times.of(100.0, 7.0), Times.of(90.0, 10.0), Times.of(90.0, 10.0), "adc"),
    (Times.of(100.0, 0.5), Times.of(100.0, 0.0), Times.of(100.0, 0.0), "header run time, adc inhibit time"),  # x/0
    (Times.of(100.0, 0.0), Times.of(100.0, 0.0), Times.of(100.0, 0.0), "header"),   # 0/0 is not a number
    (Times.of(100.0, 1.0), Times.of(math.nan, 9.0), Times.of(100.0, 9.0), "header run time, adc inhibit time"),
    (Times.of(100.0, 1.0), None, Times.of(100.0, 1.0), "header"),
    (None, Times.of(100.0, 1.0), Times.of(100.0, 1.0), "adc"),
    (None, None, None, None),
])
def test_the_header_adc_ratio_rule_replaces_run_and_inhibit_separately(header, adc, times, rule):
    assert choose(header, adc) == (times, rule)


def test_the_rule_in_hdr_json_values():
    lines = [v2(1, 1.0, 1.0, 9.0), v2(2, 1000.0, 1000.0, 10.0)]   # ADC: run 1000, inhibit 10
    m = metrics(lines, header={"runTime": 1100.0, "inhibitTime": 10.1})
    assert m["ml_analyzed_rule"] == "adc run time, header inhibit time"
    assert (m["run_time"], m["inhibit_time"], m["look_time"]) == (1000.0, 10.1, 1000.0 - 10.1)
    assert m["ml_analyzed"] == 0.25 * (1000.0 - 10.1) / 60
    assert m["ml_analyzed_header"] == 0.25 * (1100.0 - 10.1) / 60 and m["ml_analyzed_adc"] == 0.25 * 990.0 / 60


# --- I-style ADC estimate -------------------------------------------------------------
def test_v1_gaps_are_raised_to_the_minimum_and_the_run_time_is_the_last_frame_grab():
    lines = [v1(1, 0.5, 0.75), v1(2, 1.0, 1.25), v1(3, 1.3, 1.5)]   # gaps .25 and .05 (raised to .073)
    m = metrics(lines, I_ID)
    assert m["run_time"] == 1.5 and m["look_time"] == 1.5 - (0.25 + 0.073) - 0.073
    assert m["inhibit_time"] == 1.5 - m["look_time"]
    assert m["ml_analyzed"] == m["ml_analyzed_adc"] == 0.25 * m["look_time"] / 60
    assert m["ml_analyzed_header"] is None and m["ml_analyzed_rule"] == "adc"
    # a header's run time plays no part in an I-style bin
    assert metrics(lines, I_ID, header={"runTime": 9.0, "inhibitTime": 1.0}) == m


def test_v1_keeps_the_first_line_of_each_trigger_and_reports_stitched_pairs_once():
    a = v1(2, 1.0, 1.25, box=(10, 10, 50, 40))
    b, c = v1(2, 5.0, 9.0, box=(40, 20, 50, 40)), v1(2, 6.0, 9.5, box=(70, 30, 50, 40))
    m = metrics([v1(1, 0.5, 0.75), a, b, c, v1(3, 2.0, 2.5)], I_ID)
    assert m["look_time"] == 2.5 - (0.25 + 0.75) - 0.073    # lines 3 and 4 share trigger 2: left out
    assert m["stitched"] == [[2, 3], [3, 4]]                  # a chain of three: two pairs
    assert m["n_images_adc"] == 1 and m["last_trigger"] == 3
    assert m["concentration"] == 1 / m["ml_analyzed"]


def test_v1_midnight_wrap():
    lines = [v1(1, 86399.0, 86399.25), v1(2, -0.5, -0.25)]   # after midnight the times are negative
    m = metrics(lines, I_ID)
    assert m["run_time"] == 86399.75
    assert m["look_time"] == 86399.75 - (86399.5 - 86399.25) - 0.073


@pytest.mark.parametrize("bin_id, gap", [
    ("IFCB5_2015_151_235959", 0.073), ("IFCB5_2015_152_000000", 0.050), ("IFCB5_2016_001_000000", 0.050),
    ("IFCB6_2016_001_000000", 0.073), ("IFCB1_2006_157_181359", 0.073),
])
def test_ifcb5_from_june_2015_has_a_smaller_minimum_gap(bin_id, gap):
    assert min_gap(parse_bin_id(bin_id)) == gap
    m = metrics([v1(1, 0.5, 0.75), v1(2, 0.81, 1.0)], bin_id)     # a gap of .06
    assert m["look_time"] == 1.0 - max(0.81 - 0.75, gap) - gap


def test_v1_one_line_and_short_lines():
    m = metrics([v1(1, 0.5, 0.75)], I_ID)
    assert m["look_time"] == 0.75 - 0.073 and m["run_time"] == 0.75
    m = metrics([v1(1, 0.5, 0.75), "2,0.5,0,0,0,0,0,1.0"], I_ID)    # no frame grab time on line 2
    assert m["ml_analyzed"] is None and m["ml_analyzed_rule"] is None and m["last_trigger"] == 2


# --- empty and missing ADCs ---------------------------------------------------------------
@pytest.mark.parametrize("bin_id", [D_ID, I_ID])
def test_empty_and_missing_adc(bin_id):
    header = {"runTime": 600.0, "inhibitTime": 6.0}
    for adc in (parse_adc(b"", parse_bin_id(bin_id).schema), None):
        m = bin_metrics(parse_bin_id(bin_id), header, adc, [])
        assert (m["last_trigger"], m["n_images_adc"], m["stitched"], m["ml_analyzed_adc"]) == (0, 0, [], None)
        if bin_id == D_ID:
            assert m["ml_analyzed"] == 0.25 * 594.0 / 60 and m["ml_analyzed_rule"] == "header"
            assert (m["concentration"], m["trigger_frequency"]) == (0.0, 0.0)
        else:
            assert all(m[k] is None for k in ("ml_analyzed", "ml_analyzed_rule", "run_time", "concentration"))


def test_crlf_gives_the_same_metrics():
    lines = [v2(1, 1.0, 1.5, 0.25), v2(2, 2.0, 2.5, 0.5, width=4)]
    assert metrics(lines, eol="\r\n") == metrics(lines)


def test_non_positive_volume_has_no_concentration():
    m = metrics([v2(1, 1.0, 1.5, 0.25, width=4), v2(2, 2.0, 2.5, 2.5)])
    assert m["ml_analyzed"] == 0.0 and m["concentration"] is None


# --- never an error, never a non-JSON value -------------------------------------------------
FIELD = st.one_of(st.sampled_from(["0", "-1", "1.5", "nan", "inf", "-inf", "1e308", "-1e308", "", "x", "1_0",
                                   "9" * 400, "-86400.5", "5e-324"]),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str))
HEADER_VALUE = st.one_of(st.floats(allow_nan=False), st.integers(-10**400, 10**400), st.booleans(), st.text(max_size=3))


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from([D_ID, I_ID, "IFCB5_2016_001_000000"]),
       st.lists(st.tuples(st.integers(-3, 10**5), st.lists(FIELD, min_size=0, max_size=26)), max_size=12),
       st.dictionaries(st.sampled_from(["runTime", "inhibitTime", "RUNTIME", "inhibittime"]), HEADER_VALUE))
def test_metrics_never_raise_and_always_give_json(bin_id, lines, header):
    m = metrics([",".join([str(t)] + fields) for t, fields in lines], bin_id, header)
    assert list(m) == list(KEYS)
    json.dumps(m, allow_nan=False)
    if m["concentration"] is not None:
        assert m["ml_analyzed"] > 0
