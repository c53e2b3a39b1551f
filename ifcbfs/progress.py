"""An in-place progress bar on a terminal: done/total, a rate and an ETA (nothing elsewhere)."""
from __future__ import annotations

import sys
import time


class Bar:
    """Redrawn at most five times a second, and only when the stream is a terminal."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.on = self.stream.isatty()
        self.start = time.monotonic()
        self.shown = 0.0

    def elapsed(self) -> float:
        return max(time.monotonic() - self.start, 1e-9)

    def show(self, done: int, text: str) -> None:
        """Draw `done` of `total` followed by `text`."""
        now = time.monotonic()
        if not self.on or now - self.shown < 0.2:
            return
        self.shown = now
        left = round(self.elapsed() * (self.total - done) / done) if done else None
        eta = f"{left // 60}:{left % 60:02d}" if left is not None else "--:--"
        fill = 24 * done // max(self.total, 1)
        self.stream.write(f"\r\033[K[{'#' * fill}{'.' * (24 - fill)}] {text}, ETA {eta}")
        self.stream.flush()

    def text(self, text: str) -> None:
        """Draw `text` alone (work whose total is not known yet)."""
        now = time.monotonic()
        if not self.on or now - self.shown < 0.2:
            return
        self.shown = now
        self.stream.write(f"\r\033[K{text[:100]}")
        self.stream.flush()

    def clear(self) -> None:
        """Take the bar off the line (before a log line or the summary)."""
        if self.on and self.shown:
            self.stream.write("\r\033[K")
