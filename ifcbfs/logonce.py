"""Log lines said once: a damaged bin is read again at every lookup, and each problem gets one
line per key (bin, file), not a storm, in bounded memory. Standard library only."""
from __future__ import annotations

import collections
import logging
import threading


class RateLimitedLog:
    """Log a problem at most once per key, remembering the last ``maxkeys`` keys.

    A damaged bin is read again on every lookup; this keeps it to one log
    line per bad bin instead of a storm.  Thread-safe.
    """

    def __init__(self, maxkeys: int = 10000) -> None:
        self.maxkeys = maxkeys
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Return True the first time ``key`` is seen (since it was forgotten)."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            while len(self._seen) > self.maxkeys:
                self._seen.popitem(last=False)
            return True

    def log(self, logger: logging.Logger, key: str, message: str,
            level: int = logging.WARNING) -> bool:
        """Log ``key: message`` unless ``key`` was already logged; True if logged."""
        if not self.first_time(key):
            return False
        logger.log(level, "%s: %s", key, message)
        return True

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._seen.clear()


_bad_bins = RateLimitedLog()


def log_bad_bin(logger: logging.Logger, bin_key: str, message: str) -> bool:
    """Warn about a bad bin once (per process, bounded memory); True if logged."""
    return _bad_bins.log(logger, str(bin_key), message)
