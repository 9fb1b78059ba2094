"""In-process store for tests and throwaway development (``memory://``).

State lives in dicts owned by one event loop. No operation awaits while it touches
them, so each operation, and each batch, is atomic with respect to other tasks on that
loop; the store is not thread-safe and not shared between processes.

Compact by design, since it holds every outstanding challenge: one dict per kind maps
a key to a single bytes object, its expiry (8 bytes) followed by its value; a counter's
value is its ASCII decimal count. Expiry is tracked per second: each second that has
deadlines holds a list of keys (8 bytes per entry) and a min-heap orders the seconds,
so there is no per-entry bookkeeping object.

Memory is bounded twice over: expired entries are purged as writes happen (each write
drops up to ``PURGE_BATCH`` due keys, so the cost is amortized per insert) and the
number of entries is capped; a full store raises ``Unavailable`` instead of growing.
"""

from __future__ import annotations

import heapq
import math
import struct
import time
from collections.abc import Iterator, Sequence

from keyproof._time import Clock
from keyproof.errors import Unavailable
from keyproof.stores import check_ttl
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Op, Outcome, check_ops, counter_value, run_steps

__all__ = ["DEFAULT_MAX_ENTRIES", "PURGE_BATCH", "MemoryStore"]

DEFAULT_MAX_ENTRIES = 1_000_000
PURGE_BATCH = 32
_EXPIRY = struct.Struct("<d")
_HEAD = _EXPIRY.size


class MemoryStore(Store):
    """Dict-backed :class:`Store` with an injectable ``clock`` (seconds, like ``time.time``).

    An entry is live while ``clock() < expires_at``. Counters made by :meth:`hit` read
    back through :meth:`get` and :meth:`take` as ASCII decimal bytes, as in Redis.
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
        self._kinds: dict[Kind, dict[str, bytes]] = {kind: {} for kind in Kind}
        self._size = 0
        # Second -> (kind, keys whose deadline falls in it); a key replaced or taken
        # since is skipped when its second comes due.
        self._due: dict[int, dict[Kind, list[str]]] = {}
        self._seconds: list[int] = []
        self._refs = 0
        self._closed = False

    @property
    def size(self) -> int:
        """Entries held, including expired ones not yet purged (for metrics and tests)."""
        return self._size

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        check_ttl(ttl)
        return self._add(kind, key, value, ttl, self._now())

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return self._get(kind, key, self._now())

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return self._take(kind, key, self._now())

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        check_ttl(window, "window")
        return self._hit(kind, key, window, self._now())

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        check_ops(ops)
        return run_steps(_At(self, self._now()), ops)

    async def count(self, kind: Kind) -> int:
        now = self._now()
        return sum(1 for entry in self._kinds[kind].values() if _expires(entry) > now)

    async def ping(self) -> None:
        self._now()

    async def close(self) -> None:
        self._closed = True
        for entries in self._kinds.values():
            entries.clear()
        self._size = 0
        self._due.clear()
        self._seconds.clear()
        self._refs = 0

    def _items(self) -> Iterator[tuple[Kind, str, bytes, float]]:
        """Every entry held, expired or not: ``(kind, key, value, expires_at)``."""
        for kind, entries in self._kinds.items():
            for key, entry in entries.items():
                yield kind, key, entry[_HEAD:], _expires(entry)

    def _now(self) -> float:
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")
        return self._clock()

    def _live(self, kind: Kind, key: str, now: float) -> bytes | None:
        entry = self._kinds[kind].get(key)
        if entry is None or _expires(entry) <= now:
            return None
        return entry

    def _add(self, kind: Kind, key: str, value: bytes, ttl: float, now: float) -> bool:
        if self._live(kind, key, now) is not None:
            return False
        self._insert(kind, key, value, now + ttl, now)
        return True

    def _get(self, kind: Kind, key: str, now: float) -> bytes | None:
        entry = self._live(kind, key, now)
        return None if entry is None else entry[_HEAD:]

    def _take(self, kind: Kind, key: str, now: float) -> bytes | None:
        entry = self._kinds[kind].pop(key, None)
        if entry is None:
            return None
        self._size -= 1
        return entry[_HEAD:] if _expires(entry) > now else None

    def _hit(self, kind: Kind, key: str, window: float, now: float) -> int:
        entry = self._live(kind, key, now)
        if entry is None:
            self._insert(kind, key, b"1", now + window, now)
            return 1
        count = counter_value(entry[_HEAD:]) + 1
        self._kinds[kind][key] = entry[:_HEAD] + b"%d" % count
        return count

    def _insert(self, kind: Kind, key: str, value: bytes, expires_at: float, now: float) -> None:
        self._purge(now, PURGE_BATCH)
        entries = self._kinds[kind]
        fresh = key not in entries
        if fresh and self._size >= self._max_entries:
            self._purge(now, None)
            if self._size >= self._max_entries:
                raise Unavailable("store_unavailable", "the in-memory store is full")
        entries[key] = _EXPIRY.pack(expires_at) + value
        self._size += fresh
        self._remember(kind, key, expires_at)
        if self._refs > 2 * self._size + 1024:
            self._rebuild_due()

    def _remember(self, kind: Kind, key: str, expires_at: float) -> None:
        # Rounded up: every entry of a second's list has expired once that second is due.
        second = math.ceil(expires_at)
        due = self._due.get(second)
        if due is None:
            due = self._due[second] = {}
            heapq.heappush(self._seconds, second)
        due.setdefault(kind, []).append(key)
        self._refs += 1

    def _purge(self, now: float, limit: int | None) -> None:
        """Drop expired entries of the seconds now due, at most ``limit`` keys looked at."""
        budget = math.inf if limit is None else limit
        while self._seconds and self._seconds[0] <= now:
            due = self._due[self._seconds[0]]
            for kind in list(due):
                keys, entries = due[kind], self._kinds[kind]
                while keys:
                    if budget <= 0:
                        return
                    budget -= 1
                    self._refs -= 1
                    key = keys.pop()
                    entry = entries.get(key)
                    if entry is not None and _expires(entry) <= now:
                        del entries[key]
                        self._size -= 1
                del due[kind]
            del self._due[heapq.heappop(self._seconds)]

    def _rebuild_due(self) -> None:
        """Forget keys replaced or taken since they were remembered."""
        self._due.clear()
        self._seconds.clear()
        self._refs = 0
        for kind, entries in self._kinds.items():
            for key, entry in entries.items():
                self._remember(kind, key, _expires(entry))


class _At:
    """The store's operations at one instant: the steps of a batch."""

    __slots__ = ("now", "store")

    def __init__(self, store: MemoryStore, now: float) -> None:
        self.store, self.now = store, now

    def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        return self.store._add(kind, key, value, ttl, self.now)

    def get(self, kind: Kind, key: str) -> bytes | None:
        return self.store._get(kind, key, self.now)

    def take(self, kind: Kind, key: str) -> bytes | None:
        return self.store._take(kind, key, self.now)

    def hit(self, kind: Kind, key: str, window: float) -> int:
        return self.store._hit(kind, key, window, self.now)


def _expires(entry: bytes) -> float:
    expires: float = _EXPIRY.unpack_from(entry)[0]
    return expires
