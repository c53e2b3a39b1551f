"""What is wrong with a bin, as its one log line says it (core.damage)."""
from __future__ import annotations

import pytest

from ifcbfs.core.adc import parse_adc
from ifcbfs.core.bin import Bin
from ifcbfs.core.damage import problems
from ifcbfs.core.source import DataRoot

D_ID = "D20240601T000000_IFCB124"


def v2(trigger, w, h, start) -> str:
    return ",".join(str(f) for f in [trigger, 1, 0, 0, 0, 0, 0, 0, 0, 0, 35, 4, 4, 7, 8, w, h, start] + [0] * 6)


ADC = "".join(v2(n, 10, 10, 100 * (n - 1)) + "\n" for n in range(1, 6)).encode()  # 5 images, 500 bytes


def load(tmp_path, settled=True, **files: bytes) -> Bin:
    for ext, data in files.items():
        (tmp_path / f"{D_ID}.{ext}").write_bytes(data)
    return Bin.load(DataRoot(str(tmp_path)).scan("").bins[D_ID], settled=settled)


@pytest.mark.parametrize("files, said", [
    (dict(hdr=b"softwareVersion: 1\n", adc=ADC, roi=bytes(500)), ()),
    (dict(hdr=b"softwareVersion: 1\n", adc=ADC, roi=bytes(250)),
     ("3 of 5 images pass the end of the .roi (250 bytes): not served",)),
    (dict(hdr=b"softwareVersion: 1\n", adc=ADC), ("no .roi file",)),
    (dict(hdr=b"softwareVersion: 1\n", roi=bytes(500)), ("no .adc file",)),
    (dict(adc=ADC, roi=bytes(500)), ("no .hdr file",)),
    (dict(hdr=b"softwareVersion: 1\n"), ("no .adc or .roi file",)),
    (dict(hdr=b"", adc=ADC, roi=bytes(500)), ("empty .hdr",)),
    (dict(hdr=b" \r\n\n", adc=ADC, roi=bytes(500)), ("empty .hdr",)),
    (dict(hdr=b"softwareVersion: \xff\xfe\n", adc=ADC, roi=bytes(500)), (".hdr is not UTF-8 text",)),
    (dict(hdr=b"softwareVersion: 1\n", adc=ADC + b"garbage\n\xff\n", roi=bytes(500)),
     ("2 lines of the .adc do not parse",)),
    (dict(hdr=b"", adc=b"x\n" + ADC, roi=bytes(0)),
     ("empty .hdr", "1 line of the .adc does not parse", "5 of 5 images pass the end of the .roi (0 bytes): not served")),
])
def test_each_problem_is_named(tmp_path, files, said):
    assert load(tmp_path, **files).problems == said


def test_a_bin_still_growing_is_not_judged(tmp_path):
    """While an instrument writes a bin, its .roi lags its .adc and its files appear one by one."""
    assert load(tmp_path, settled=False, hdr=b"", adc=ADC + b"5,1", roi=bytes(250)).problems == ()


def test_a_held_back_last_line_is_not_a_line_that_does_not_parse(tmp_path):
    adc = parse_adc(ADC + b"6,1,0", "v2")
    assert adc.unfinished and adc.skipped == 1   # skipped for now ...
    b = load(tmp_path, hdr=b"softwareVersion: 1\n", adc=ADC + b"6,1,0", roi=bytes(500))
    assert b.problems == () and b.n_triggers == 6   # ... but once settled it is a row


def test_real_bins_have_no_problems(ifcb_data, expected):
    for bin_id in expected["bins"]:
        files = DataRoot(str(ifcb_data / "bins" / bin_id)).scan("").bins[bin_id]
        assert problems(files, open(files.hdr.path, "rb").read(), None) == (), bin_id
        assert Bin.load(files, settled=True).problems == (), bin_id
