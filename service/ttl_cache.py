"""A small in-process cache whose entries expire: for lookups every request repeats.

A reader may ask for a shorter lifetime than the cache's own (`max_age_s`): the key cache does
so while its invalidation channel is down (see `service.invalidation`).

>>> cache = TtlCache[str, int](ttl_s=5)
>>> cache.put("a", 1); cache.get("a")
1
>>> cache.discard_where(lambda key, value: value == 1); cache.get("a") is None
1
True
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        """key → (when it was put, monotonic; value)"""

    def get(self, key: K, max_age_s: float | None = None) -> V | None:
        """The value, unless it is older than the cache's lifetime or than `max_age_s`."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        lifetime = self.ttl_s if max_age_s is None else min(self.ttl_s, max_age_s)
        if time.monotonic() - entry[0] > lifetime:
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def discard_where(self, predicate: Callable[[K, V], bool]) -> int:
        """Drops every entry the predicate picks; returns how many (a scan: for rare events)."""
        doomed = [key for key, (_, value) in self._entries.items() if predicate(key, value)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
