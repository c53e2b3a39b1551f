"""When a bin has stopped growing: its files unchanged for SETTLE seconds.

An instrument writes a bin's `.adc` and `.roi` for about 20 minutes, then leaves them. A last
ADC line without its newline may be a line still being written, or the end of a file that
will never get one; only time tells them apart.
"""
from __future__ import annotations

from .source import BinFiles

SETTLE = 60.0  # seconds without a change after which a bin's files are taken as final


def settled(files: BinFiles, now: float) -> bool:
    """True once the newest of the bin's files was last modified SETTLE seconds before `now`."""
    return now - files.mtime_ns / 1e9 >= SETTLE
