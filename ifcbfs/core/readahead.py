"""Bounded read-ahead for a remote source: when reads of one file follow each other, the next
one fetches a window of the bytes that come after it in one request.

A reader that walks a bin's images in order reads its `.roi` front to back, each image where the
one before it ended. Over a network each read costs a round trip; a window of the bytes ahead
serves the next images with none. Reads that do not follow each other (one image, a stitched
pair, a shuffled training loader) are fetched exactly, so they never cost more than their bytes.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from .source import SourceFile

WINDOW = 512 << 10  # bytes fetched ahead: some 50 typical images, a few milliseconds on a LAN
FILES = 32  # windows kept (one per file being walked): memory is at most FILES * WINDOW
AFTER = 2  # reads that must follow each other before the next one reads ahead
GAP = 4096  # stray bytes allowed between one image's end and the next one's start


class ReadAhead:
    """Windows of bytes ahead of sequential readers, per file version; thread-safe."""

    def __init__(self, window: int = WINDOW, files: int = FILES, after: int = AFTER):
        self.window, self.files, self.after = window, files, after
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple, tuple[int, bytes]] = OrderedDict()  # version -> (start, bytes)
        self._runs: OrderedDict[tuple, tuple[int, int]] = OrderedDict()  # version -> (last end, run length)
        self.hits = 0  # reads served from a window (no request)

    def holds(self, f: SourceFile, start: int, length: int) -> bool:
        """True when a window holds these bytes (reading them costs no request)."""
        held = self._held.get((f.path, f.ident))
        return bool(held) and held[0] <= start and start + length <= held[0] + len(held[1])

    def read(self, f: SourceFile, start: int, length: int, fetch: Callable[[int, int], bytes]) -> bytes:
        """`length` bytes at `start` of `f`, from a window or by `fetch(start, length)`, which may
        return fewer bytes only when the file ends first."""
        version = (f.path, f.ident)
        with self._lock:
            last = self._runs.get(version)
            run = last[1] + 1 if last and 0 <= start - last[0] <= GAP else 0
            _keep(self._runs, version, (start + length, run), 4 * self.files)
            held = self._held.get(version)
            if held and held[0] <= start and start + length <= held[0] + len(held[1]):
                self.hits += 1
                offset = start - held[0]
                return held[1][offset:offset + length]
        if run < self.after or length >= self.window:
            return fetch(start, length)
        data = fetch(start, min(self.window, f.size - start))
        with self._lock:
            _keep(self._held, version, (start, data), self.files)
        return data[:length]


def _keep(table: OrderedDict, key, value, limit: int) -> None:
    """Set `table[key]` as the newest entry and drop the oldest beyond `limit`."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)
