"""In-process store for tests and throwaway development (``memory://``).

State lives in one dict owned by one event loop. No operation awaits while it touches
the dict, so each is atomic with respect to other tasks on that loop; the store is not
thread-safe and not shared between processes.

Memory is bounded twice over: expired entries are purged as writes happen (each write
pops up to ``PURGE_BATCH`` expired entries from a min-heap of deadlines, so the cost is
amortized O(log n) per insert) and the number of entries is capped; a full store raises
``Unavailable`` instead of growing.
"""

from __future__ import annotations

import heapq
import time

from keyproof._time import Clock
from keyproof.errors import Unavailable
from keyproof.stores import check_ttl
from keyproof.stores.base import Kind, Store

__all__ = ["DEFAULT_MAX_ENTRIES", "PURGE_BATCH", "MemoryStore"]

DEFAULT_MAX_ENTRIES = 1_000_000
PURGE_BATCH = 32
_Slot = tuple[Kind, str]


class MemoryStore(Store):
    """Dict-backed :class:`Store` with an injectable ``clock`` (seconds, like ``time.time``).

    An entry is live while ``clock() < expires_at``. Counters made by :meth:`hit` hold
    an ``int``; :meth:`get` and :meth:`take` return it as ASCII decimal bytes, as Redis does.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[_Slot, tuple[bytes | int, float]] = {}
        # Deadlines of inserted entries; stale items (entry replaced or taken) are
        # skipped when popped and dropped wholesale when the heap outgrows the dict.
        self._deadlines: list[tuple[float, Kind, str]] = []
        self._closed = False

    @property
    def size(self) -> int:
        """Entries held, including expired ones not yet purged (for metrics and tests)."""
        return len(self._entries)

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        check_ttl(ttl)
        now = self._now()
        if self._live(kind, key, now) is not None:
            return False
        self._insert((kind, key), value, now + ttl, now)
        return True

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return _as_bytes(self._live(kind, key, self._now()))

    async def take(self, kind: Kind, key: str) -> bytes | None:
        value = self._live(kind, key, self._now())
        self._entries.pop((kind, key), None)
        return _as_bytes(value)

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        check_ttl(window, "window")
        now = self._now()
        current = self._live(kind, key, now)
        if current is None:
            self._insert((kind, key), 1, now + window, now)
            return 1
        count = _as_int(current) + 1
        self._entries[(kind, key)] = (count, self._entries[(kind, key)][1])
        return count

    async def count(self, kind: Kind) -> int:
        now = self._now()
        return sum(
            1 for (k, _), (_, expires) in self._entries.items() if k == kind and expires > now
        )

    async def ping(self) -> None:
        self._now()

    async def close(self) -> None:
        self._closed = True
        self._entries.clear()
        self._deadlines.clear()

    def _now(self) -> float:
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")
        return self._clock()

    def _live(self, kind: Kind, key: str, now: float) -> bytes | int | None:
        entry = self._entries.get((kind, key))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def _insert(self, slot: _Slot, value: bytes | int, expires_at: float, now: float) -> None:
        self._purge(now, PURGE_BATCH)
        if slot not in self._entries and len(self._entries) >= self._max_entries:
            self._purge(now, None)
            if len(self._entries) >= self._max_entries:
                raise Unavailable("store_unavailable", "the in-memory store is full")
        self._entries[slot] = (value, expires_at)
        heapq.heappush(self._deadlines, (expires_at, *slot))
        if len(self._deadlines) > 2 * len(self._entries) + 1024:
            self._rebuild_deadlines()

    def _purge(self, now: float, limit: int | None) -> None:
        """Drop expired entries whose deadline is due, at most ``limit`` heap items."""
        popped = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            if limit is not None and popped >= limit:
                return
            expires_at, kind, key = heapq.heappop(self._deadlines)
            popped += 1
            entry = self._entries.get((kind, key))
            if entry is not None and entry[1] == expires_at:
                del self._entries[(kind, key)]

    def _rebuild_deadlines(self) -> None:
        self._deadlines = [(expires, *slot) for slot, (_, expires) in self._entries.items()]
        heapq.heapify(self._deadlines)


def _as_bytes(value: bytes | int | None) -> bytes | None:
    if isinstance(value, int):
        return str(value).encode("ascii")
    return value


def _as_int(value: bytes | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        return 0
