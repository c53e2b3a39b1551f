"""Which bins a tree shows: a time window, instruments and id patterns, with one meaning for the
mount (`-o since=,until=,instrument=`) and the export (`--since`, `--until`, `--instrument`,
`--bins`). `DataRoot` applies it, so only matching bins, and the folders that lead to them, exist.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timezone

from .ids import BinId

DATE_EXAMPLE = "like 2024-06-01 or 2024-06-01T12:00:00Z"


@dataclass(frozen=True, slots=True)
class BinFilter:
    """Bins sampled at or after `since` and before `until` (UTC), of one of `instruments`, whose id
    matches one of `patterns` (fnmatch); an empty field lets every bin through."""

    since: datetime | None = None
    until: datetime | None = None
    instruments: frozenset[int] = frozenset()
    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since {self.since:%Y-%m-%dT%H:%M:%SZ} is not before until "
                             f"{self.until:%Y-%m-%dT%H:%M:%SZ}: no bin could match")

    def __bool__(self) -> bool:
        """True when the filter leaves any bin out."""
        return bool(self.since or self.until or self.instruments or self.patterns)

    @property
    def signature(self) -> str:
        """The filter as one canonical line ('' when it lets every bin through)."""
        parts = (f"since={self.since.isoformat()}" if self.since else "",
                 f"until={self.until.isoformat()}" if self.until else "",
                 "instrument=" + ":".join(map(str, sorted(self.instruments))) if self.instruments else "",
                 "id=" + "|".join(self.patterns) if self.patterns else "")
        return ",".join(p for p in parts if p)

    def matches(self, bin_id: BinId) -> bool:
        """Whether the tree shows this bin."""
        return ((self.since is None or bin_id.timestamp >= self.since)
                and (self.until is None or bin_id.timestamp < self.until)
                and (not self.instruments or bin_id.instrument in self.instruments)
                and (not self.patterns or any(fnmatch.fnmatchcase(bin_id.text, p) for p in self.patterns)))


def parse_date(text: str) -> datetime:
    """An ISO 8601 date or date-time (`2024-06-01`, `2024-06-01T12:00`, `...Z`, `...+02:00`) in
    UTC; one without a zone is UTC. Raises ValueError with a one-line message."""
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{text!r} is not a date ({DATE_EXAMPLE}, UTC)") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def parse_instruments(text: str) -> frozenset[int]:
    """Instrument numbers separated by ':' (`124` or `5:124`). Raises ValueError in one line."""
    parts = text.split(":")
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a list of instrument numbers (like 124 or 5:124)")
    return frozenset(int(p) for p in parts)
