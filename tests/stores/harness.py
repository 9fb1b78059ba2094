"""Backends under test, each wrapped with the means to make its entries expire."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest
import redis

from keyproof.errors import Unavailable
from keyproof.stores._postgres_schema import table_for
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Hit, Take
from keyproof.testing import FrozenClock

START = 1_800_000_000.0
REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_worker.py")


async def until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Wait for ``condition``: work a store does in the background, or a server's view."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {timeout} s"
        await asyncio.sleep(0.01)


def worker_env() -> dict[str, str]:
    """Environment for store_worker.py: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


class Inspector(Protocol):
    """Reads and ages a store's entries behind its back, for stores that own their clock."""

    async def pttl(self, kind: Kind, key: str) -> int:
        """Milliseconds the entry has left; -2 if absent, like Redis PTTL."""

    async def expire_now(self, kind: Kind, key: str) -> None:
        """Move the entry's deadline into the past."""


@dataclass
class RedisInspector:
    client: redis.Redis
    prefix: str

    def key(self, kind: Kind, key: str) -> str:
        return f"{self.prefix}{kind.value}:{key}"

    async def pttl(self, kind: Kind, key: str) -> int:
        return int(self.client.pttl(self.key(kind, key)))

    async def expire_now(self, kind: Kind, key: str) -> None:
        self.client.pexpireat(self.key(kind, key), 1)


@dataclass
class PostgresInspector:
    url: str
    schema: str

    async def pttl(self, kind: Kind, key: str) -> int:
        sql = "SELECT ceil(extract(epoch FROM expires_at - now()) * 1000) FROM {t} WHERE {row}"
        remaining = await self._run(kind, key, sql)
        return -2 if remaining is None else int(remaining)

    async def expire_now(self, kind: Kind, key: str) -> None:
        await self._run(
            kind, key, "UPDATE {t} SET expires_at = now() - interval '1 ms' WHERE {row}"
        )

    async def _run(self, kind: Kind, key: str, template: str) -> object:
        table = f'"{self.schema}".{table_for(kind)}'
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(
                template.format(t=table, row="kind = $1 AND key = $2"), kind.value, key
            )
        finally:
            await conn.close()


@dataclass
class Backend:
    """A store plus how to let time pass for it.

    Memory and SQLite take an injected clock; Redis and PostgreSQL keep their own
    time, so for them ``expire`` checks that the entry carries a TTL no longer than
    asked for and then moves its deadline into the past instead of waiting.
    """

    name: str
    store: Store
    clock: FrozenClock | None = None
    inspector: Inspector | None = None

    async def pttl(self, kind: Kind, key: str) -> int:
        if self.inspector is None:
            raise TypeError(f"{self.name} has no PTTL")
        return await self.inspector.pttl(kind, key)

    async def expire(self, kind: Kind, key: str, ttl: float) -> None:
        """Make the entry written with ``ttl`` reach its deadline."""
        if self.clock is not None:
            self.clock.advance(ttl)
            return
        remaining = await self.pttl(kind, key)
        assert 0 < remaining <= math.ceil(ttl * 1000), remaining
        assert self.inspector is not None
        await self.inspector.expire_now(kind, key)


def every_operation(store: Store) -> list[Callable[[], Awaitable[object]]]:
    """One call of each Store method, not yet started."""
    return [
        lambda: store.add(Kind.CHALLENGE, "n1", b"v", 60),
        lambda: store.get(Kind.CHALLENGE, "n1"),
        lambda: store.take(Kind.CHALLENGE, "n1"),
        lambda: store.hit(Kind.COUNTER, "ip", 60),
        lambda: store.count(Kind.CHALLENGE),
        lambda: store.batch([Hit(Kind.COUNTER, "ip", 60), Take(Kind.CHALLENGE, "n1")]),
        store.ping,
    ]


async def assert_all_unavailable(store: Store) -> None:
    """Every operation fails closed with ``store_unavailable``."""
    for call in every_operation(store):
        with pytest.raises(Unavailable) as caught:
            await call()
        assert caught.value.code == "store_unavailable"
