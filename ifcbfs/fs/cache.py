"""A byte-bounded LRU cache of produced file contents."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable


class ByteCache:
    """Keeps the most recently used values while their total length stays within `capacity`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = value
            self.used += len(value)
            while self.used > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self.used -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0
