"""Volume analyzed and bin metrics for `hdr.json` (SPEC section 8), from the parsed header and ADC.

Pure and total: a value that cannot be computed is None (JSON null), never an exception, NaN or
infinity. Sums run in file order, so the floats are the same on every machine.
"""
from __future__ import annotations

import math
from collections import Counter
from itertools import repeat
from operator import mul, sub
from datetime import datetime, timezone
from typing import NamedTuple, Sequence

from .adc import Adc
from .ids import BinId

ML_PER_MINUTE = 0.25  # the sample syringe's flow
MIN_GAP = 0.073  # I-style: the shortest time between one frame grab and the next trigger
MIN_GAP_IFCB5_LATE = 0.050  # IFCB5 from IFCB5_CHANGE on
IFCB5_CHANGE = datetime(2015, 6, 1, tzinfo=timezone.utc)
DAY = 86400.0
RATIO_LOW, RATIO_HIGH = 0.98, 1.02  # header/ADC ratios outside these take the ADC's value
NAN = math.nan
KEYS = ("ml_analyzed", "ml_analyzed_adc", "ml_analyzed_header", "ml_analyzed_rule", "run_time",
        "look_time", "inhibit_time", "last_trigger", "trigger_frequency", "n_images_adc",
        "concentration", "stitched")


class Times(NamedTuple):
    """Run, inhibit and look time of a sample, seconds: the camera watched for run - inhibit.

    All three are kept, as each estimate computes two and derives the third."""

    run: float
    inhibit: float
    look: float

    @classmethod
    def of(cls, run: float, inhibit: float) -> "Times":
        return cls(run, inhibit, run - inhibit)

    @property
    def ml(self) -> float:
        return ML_PER_MINUTE * self.look / 60


def _float(text: str) -> float:
    """An ADC field as a float; NaN when it is not a number (NaN then spreads to the result)."""
    if "_" in text:  # float() takes '1_0'; a CSV number is never written so
        return NAN
    try:
        return float(text)
    except ValueError:
        return NAN


def _floats(texts: list[str]) -> list[float]:
    """A column of ADC fields as floats (all at once in the usual case where all are numbers)."""
    try:
        if "_" not in "".join(texts):
            return list(map(float, texts))
    except ValueError:
        pass
    return [_float(text) for text in texts]


def _columns(adc: Adc | None, *indexes: int) -> list[list[str]] | None:
    """The ADC fields at `indexes` as text columns; None when a line is too short to hold them."""
    return adc.columns(*indexes) if adc is not None else [[] for _ in indexes]


def _as_floats(adc: Adc | None, column: list[str]) -> list[float]:
    """A text column of `adc` as floats."""
    if adc is not None and adc.table is not None:  # a file without '_' (adc._parse_plain)
        try:
            return list(map(float, column))
        except ValueError:
            pass
    return _floats(column)


class _FloatsWhereRead(Sequence):
    """A text column read as floats only where it is read, each as `_float` reads it (the v2
    estimate reads its times at the first 50 lines and the last one)."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, at):
        return _floats(self.texts[at]) if isinstance(at, slice) else _float(self.texts[at])


def min_gap(bin_id: BinId) -> float:
    """The I-style minimum gap: 0.050 s for IFCB5 from 2015-06-01, else 0.073 s."""
    return MIN_GAP_IFCB5_LATE if bin_id.instrument == 5 and bin_id.timestamp >= IFCB5_CHANGE else MIN_GAP


def adc_times_v1(triggers: Sequence[int], opens: Sequence[float], grabs: Sequence[float], gap: float) -> Times | None:
    """The I-style ADC estimate: run time is the last frame grab, look time what the gaps leave."""
    seen: set[int] = set()
    kept = []
    for trigger, open_, grab in zip(triggers, opens, grabs):
        if trigger not in seen:  # a stitched pair shares its trigger: count it once
            seen.add(trigger)
            kept.append((open_ + DAY if open_ < 0 else open_, grab + DAY if grab < 0 else grab))
    if not kept:
        return None
    run = kept[-1][1]
    total = 0.0
    for (_, grab), (next_open, _) in zip(kept, kept[1:]):
        step = next_open - grab
        total += gap if step < gap else step
    look = run - total - gap
    return Times(run, run - look, look)


def _step(diffs: Sequence[float]) -> float:
    """The most common of `diffs` rounded to 4 decimals, the smallest of a tie; NaN when there is
    none. Rounded as numpy rounds: scaled by 10^4, to the nearest integer (half to even)."""
    counts = Counter(map(round, filter(math.isfinite, map(mul, diffs, repeat(10000.0)))))
    if not counts:
        return NAN
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top) / 10000.0


def _median(values: Sequence[float]) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return NAN
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def adc_times_v2(adc_time: Sequence[float], run_time: Sequence[float], inhibit: Sequence[float]) -> Times | None:
    """The D-style ADC estimate (ifcb-analysis IFCB_volume_analyzed_fromADC, Nov 2022)."""
    n = len(inhibit)
    if n < 2 or not any(inhibit):  # (all zero; NaN is not)
        return None
    rises = map(sub, inhibit[1:], inhibit[:-1])  # inhibit[i] - inhibit[i - 1], from i = 1
    good = [0] + [i for i, v, rise in zip(range(1, n), inhibit[1:], rises) if v > 0 and -0.1 < rise < 5]
    at = inhibit.__getitem__
    diffs = list(map(sub, map(at, good[1:]), map(at, good[:-1])))  # (columns: a bin has thousands)
    step = _step(diffs)
    run_offset = inhibit_offset = 0.0
    if run_time[1] - adc_time[1] > 10:  # the clocks carry an offset
        run_offset = run_time[1] - adc_time[1]
        inhibit_offset = inhibit[1] + step * 2
    if len(good) == n:
        inhibit_total = inhibit[-1] - inhibit_offset
    else:
        inhibit_total = inhibit[good[-1]] + (n - len(good)) * step - inhibit_offset
    run = run_time[-1] - run_offset
    first = min(n, 50)
    offsets = [r - a for r, a in zip(run_time[:first], adc_time[:first])]
    run2 = adc_time[-1] + _median(offsets) - run_offset
    if abs(run - run2) > 0.2:
        run = run2
    return Times.of(run, inhibit_total)


def header_times(header: dict) -> Times | None:
    """runTime and inhibitTime of a header (keys without case, the last one of a kind wins)."""
    found: dict[str, float] = {}
    for key, value in header.items():
        name = key.lower()
        if name in ("runtime", "inhibittime"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[name] = _to_float(value)
            else:
                found.pop(name, None)
    if "runtime" not in found or "inhibittime" not in found:
        return None
    return Times.of(found["runtime"], found["inhibittime"])


def _to_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range
        return NAN


def _replaced(header_value: float, adc_value: float) -> bool:
    """True when header/ADC is outside [0.98, 1.02]; a ratio that is not a number replaces nothing."""
    if adc_value == 0:
        return header_value != 0 and not math.isnan(header_value)  # x/0 is infinite, 0/0 is not a number
    ratio = header_value / adc_value
    return ratio < RATIO_LOW or ratio > RATIO_HIGH


def choose(header: Times | None, adc: Times | None) -> tuple[Times | None, str | None]:
    """The ifcb-analysis rule (IFCB_volume_analyzed.m): header times, each replaced separately by
    the ADC's when they disagree by over 2 %; the ADC's when the header has none."""
    if header is None:
        return adc, ("adc" if adc is not None else None)
    if adc is None:
        return header, "header"
    run_from = "adc" if _replaced(header.run, adc.run) else "header"
    inhibit_from = "adc" if _replaced(header.inhibit, adc.inhibit) else "header"
    if run_from == inhibit_from:
        return (adc if run_from == "adc" else header), run_from
    times = Times.of(adc.run if run_from == "adc" else header.run,
                     adc.inhibit if inhibit_from == "adc" else header.inhibit)
    return times, f"{run_from} run time, {inhibit_from} inhibit time"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _ratio(top: float | int | None, bottom: float | None) -> float | None:
    """top / bottom when both exist and it is a finite number, else None."""
    if top is None or bottom is None or bottom == 0:
        return None
    try:
        return _finite(top / bottom)
    except OverflowError:
        return None


def bin_metrics(bin_id: BinId, header: dict, adc: Adc | None, pairs: Sequence[tuple[int, int]]) -> dict:
    """Every key of SPEC section 8 for one bin: `adc` is None when the bin has no `.adc`, `pairs`
    are its stitched pairs as (first, second) targets (stitch.find_pairs; none when unstitched)."""
    triggers = list(map(int, adc.columns(0)[0])) if adc is not None else []  # rows have integer triggers
    if bin_id.style == "I":
        columns = _columns(adc, 7, 8)
        columns = [_as_floats(adc, column) for column in columns] if columns is not None else None
        estimate = adc_times_v1(triggers, *columns, min_gap(bin_id)) if columns else None
        from_header = None
        times, rule = estimate, ("adc" if estimate is not None else None)
    else:
        columns = _columns(adc, 1, 22, 23)
        if columns is not None:
            adc_time, run_time, inhibit = columns
            columns = [_FloatsWhereRead(adc_time), _FloatsWhereRead(run_time), _as_floats(adc, inhibit)]
        estimate = adc_times_v2(*columns) if columns else None
        from_header = header_times(header)
        times, rule = choose(from_header, estimate)
    ml = _finite(times.ml) if times else None
    run = _finite(times.run) if times else None
    last_trigger = triggers[-1] if triggers else 0
    n_images = (adc.n_rois if adc is not None else 0) - len(pairs)
    return {
        "ml_analyzed": ml,
        "ml_analyzed_adc": _finite(estimate.ml) if estimate else None,
        "ml_analyzed_header": _finite(from_header.ml) if from_header else None,
        "ml_analyzed_rule": rule,
        "run_time": run,
        "look_time": _finite(times.look) if times else None,
        "inhibit_time": _finite(times.inhibit) if times else None,
        "last_trigger": last_trigger,
        "trigger_frequency": _ratio(last_trigger, run),
        "n_images_adc": n_images,
        "concentration": _ratio(n_images, ml) if ml is not None and ml > 0 else None,
        "stitched": [[first, second] for first, second in pairs],
    }
