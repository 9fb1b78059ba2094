"""Store outages, told to the operator: logged with their cause, counted, and their end logged.

Every request that meets a failed store fails closed (``503 store_unavailable``); this
wrapper makes sure the operator also hears about it, without one log line per request:

- a failure is logged at ERROR with its cause, e.g. ``store unavailable: ConnectionError:
  Error 111 connecting to 127.0.0.1:6379.``, at most once per ``interval`` seconds; the
  line counts the failed calls since the previous one (``failed_calls``);
- the first success after a logged failure logs ``store available again`` with the
  outage's length, so a store that flaps cannot flood the log either;
- ``keyproof_store_failures_total{operation}`` counts every failed call, and
  ``keyproof_store_up`` is 0 during an outage and 1 otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from keyproof.errors import Unavailable
from keyproof.server._logs import describe_cause
from keyproof.server._metrics import Metrics
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Op, Outcome

__all__ = ["LOG_INTERVAL", "WatchedStore"]

LOG_INTERVAL = 30.0
_T = TypeVar("_T")
_log = logging.getLogger("keyproof.server.store")


class WatchedStore(Store):
    """A :class:`Store` that behaves exactly as ``inner`` and reports its outages."""

    def __init__(
        self,
        inner: Store,
        metrics: Metrics,
        *,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._down_since: float | None = None
        self._reported = False
        self._logged_at: float | None = None
        self._unlogged = 0

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        return await self._watch("add", self.inner.add(kind, key, value, ttl))

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return await self._watch("get", self.inner.get(kind, key))

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return await self._watch("take", self.inner.take(kind, key))

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        return await self._watch("hit", self.inner.hit(kind, key, window))

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        return await self._watch("batch", self.inner.batch(ops))

    async def count(self, kind: Kind) -> int:
        return await self._watch("count", self.inner.count(kind))

    async def ping(self) -> None:
        await self._watch("ping", self.inner.ping())

    async def open(self) -> None:
        await self._watch("open", self.inner.open())

    async def migrate(self) -> tuple[int, int] | None:
        return await self.inner.migrate()

    async def close(self) -> None:
        await self.inner.close()

    async def _watch(self, operation: str, call: Awaitable[_T]) -> _T:
        try:
            result = await call
        except Unavailable as exc:
            self._failed(operation, exc)
            raise
        if self._down_since is not None:
            self._recovered(self._down_since)
        return result

    def _failed(self, operation: str, error: Unavailable) -> None:
        self._metrics.store_failures.labels(operation).inc()
        self._unlogged += 1
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            self._reported = False
            self._metrics.store_up.set(0)
        if self._logged_at is None or now - self._logged_at >= self._interval:
            cause = describe_cause(error)
            fields = {"operation": operation, "cause": cause, "failed_calls": self._unlogged}
            _log.error("store unavailable: %s", cause, extra={"fields": fields})
            self._logged_at = now
            self._unlogged = 0
            self._reported = True

    def _recovered(self, down_since: float) -> None:
        self._down_since = None
        self._metrics.store_up.set(1)
        if self._reported:  # an outage the log never mentioned needs no all-clear
            seconds = self._clock() - down_since
            _log.warning(
                "store available again after %.1f s",
                seconds,
                extra={"fields": {"outage_seconds": round(seconds, 3)}},
            )
