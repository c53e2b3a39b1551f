"""Bin and target identifiers, their timestamps, instruments and day folders."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import IdentifierError

# re.ASCII: \d is 0-9 only (by default it also takes other scripts' digits, which int() accepts)
_D_STYLE = re.compile(r"D(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})_IFCB(\d+)", re.ASCII)
_I_STYLE = re.compile(r"IFCB(\d+)_(\d{4})_(\d{3})_(\d{2})(\d{2})(\d{2})", re.ASCII)
_TARGET = re.compile(r"(.+)_(\d{5,})", re.ASCII)
_D_DAY = re.compile(r"D(\d{4})(\d{2})(\d{2})", re.ASCII)
_I_DAY = re.compile(r"IFCB(\d+)_(\d{4})_(\d{3})", re.ASCII)


@dataclass(frozen=True, slots=True)
class BinId:
    """A parsed bin id: its text, naming style ('D' or 'I'), instrument and UTC time."""

    text: str
    style: str
    instrument: int
    timestamp: datetime

    @property
    def schema(self) -> str:
        """ADC schema of the bin: 'v1' for I-style, 'v2' for D-style."""
        return "v2" if self.style == "D" else "v1"

    def __str__(self) -> str:
        return self.text


def _checked(text: str, *fields: int) -> datetime:
    try:
        return datetime(*fields, tzinfo=timezone.utc)
    except ValueError as err:
        raise IdentifierError(f"{text!r}: not a valid date or time ({err})") from None


def parse_bin_id(text: str) -> BinId:
    """Parse an I-style (`IFCB5_2012_028_081515`) or D-style (`D20130526T095207_IFCB013`) bin id."""
    if not isinstance(text, str):
        raise IdentifierError(f"{text!r}: a bin id is a string")
    m = _D_STYLE.fullmatch(text)
    if m:
        y, mo, d, hh, mm, ss, n = (int(g) for g in m.groups())
        return BinId(text, "D", n, _checked(text, y, mo, d, hh, mm, ss))
    m = _I_STYLE.fullmatch(text)
    if m:
        n, y, doy, hh, mm, ss = (int(g) for g in m.groups())
        day = _checked(text, y, 1, 1, hh, mm, ss)
        if not 1 <= doy <= (366 if _leap(y) else 365):
            raise IdentifierError(f"{text!r}: day of year {doy} does not exist in {y}")
        return BinId(text, "I", n, day + timedelta(days=doy - 1))
    raise IdentifierError(f"{text!r} is not a bin id (expected like D20130526T095207_IFCB013 or IFCB5_2012_028_081515)")


def is_bin_id(text: str) -> bool:
    """True when `text` is a valid bin id."""
    try:
        parse_bin_id(text)
    except IdentifierError:
        return False
    return True


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def target_id(bin_id: str, target: int) -> str:
    """The name of image `target` (1-based ADC line number) of a bin: `BIN_00003`."""
    if not isinstance(target, int) or target < 1:
        raise IdentifierError(f"{target!r}: a target number is a positive integer")
    return f"{bin_id}_{target:05d}"


def split_target_id(text: str) -> tuple[str, int] | None:
    """`BIN_00003` as ('BIN', 3), BIN not checked to be a bin id; None for any other shape."""
    m = _TARGET.fullmatch(text) if isinstance(text, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def parse_target_id(text: str) -> tuple[BinId, int]:
    """Split `BIN_00003` into the parsed bin id and the target number 3."""
    split = split_target_id(text)
    if split is None:
        raise IdentifierError(f"{text!r} is not a target id (expected BIN_NNNNN)")
    return parse_bin_id(split[0]), split[1]


def timestamp_iso(bin_id: BinId) -> str:
    """The bin's time as ISO 8601 UTC, e.g. `2013-05-26T09:52:07Z`."""
    return bin_id.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_day_folder(text: str) -> datetime:
    """The UTC date of a day folder (`D20130526`, or I-style `IFCB5_2012_028`)."""
    if not isinstance(text, str):
        raise IdentifierError(f"{text!r}: a day folder name is a string")
    m = _D_DAY.fullmatch(text)
    if m:
        return _checked(text, *(int(g) for g in m.groups()))
    m = _I_DAY.fullmatch(text)
    if m:
        y, doy = int(m.group(2)), int(m.group(3))
        if 1 <= doy <= (366 if _leap(y) else 365):
            return _checked(text, y, 1, 1) + timedelta(days=doy - 1)
    raise IdentifierError(f"{text!r} is not a day folder (expected like D20130526 or IFCB5_2012_028)")
