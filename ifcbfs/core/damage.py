"""What is wrong with a bin, in a few words for its one log line.

Judged only once a bin has settled (core.settle): while an instrument writes it, a missing
file, an empty header or images past the end of the `.roi` are how every bin starts.
"""
from __future__ import annotations

from operator import add, mul

from .adc import Adc
from .source import BinFiles


def problems(files: BinFiles, hdr: bytes, adc: Adc | None) -> tuple[str, ...]:
    """The bin's problems, one phrase each ((): none), from its files, its header's bytes
    and its parsed ADC."""
    found = []
    missing = [f".{ext}" for ext, f in (("hdr", files.hdr), ("adc", files.adc), ("roi", files.roi)) if f is None]
    if missing:
        found.append(f"no {' or '.join(missing)} file")
    if files.hdr is not None:
        if not hdr.strip():
            found.append("empty .hdr")
        elif not _is_utf8(hdr):
            found.append(".hdr is not UTF-8 text")
    if adc is not None:
        if adc.skipped:
            found.append(f"{_lines(adc.skipped)} of the .adc {'does' if adc.skipped == 1 else 'do'} not parse")
        if files.roi is not None:
            _, _, _, _, widths, heights, starts = adc.roi_columns  # (by columns: a bin has thousands)
            size = files.roi.size
            beyond = sum(end > size for end in map(add, starts, map(mul, widths, heights)))
            if beyond:
                found.append(f"{beyond} of {adc.n_rois} images pass the end of the .roi "
                             f"({size} bytes): not served")
    return tuple(found)


def _lines(n: int) -> str:
    return "1 line" if n == 1 else f"{n} lines"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
