"""Backends under test, each wrapped with the means to make its entries expire."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from keyproof.stores.base import Kind, Store
from keyproof.testing import FrozenClock

START = 1_800_000_000.0
REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_worker.py")


def worker_env() -> dict[str, str]:
    """Environment for store_worker.py: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


@dataclass
class Backend:
    """A store plus how to let time pass for it.

    Memory and SQLite take an injected clock; Redis keeps its own time, so for it
    ``expire`` checks that the key carries a TTL no longer than asked for and then
    lets Redis expire it at once (PEXPIREAT in the past) instead of waiting.
    """

    name: str
    store: Store
    clock: FrozenClock | None = None
    raw: redis.Redis | None = None
    prefix: str = ""

    def redis_key(self, kind: Kind, key: str) -> str:
        return f"{self.prefix}{kind.value}:{key}"

    def pttl(self, kind: Kind, key: str) -> int:
        if self.raw is None:
            raise TypeError(f"{self.name} has no PTTL")
        return int(self.raw.pttl(self.redis_key(kind, key)))

    def expire(self, kind: Kind, key: str, ttl: float) -> None:
        """Make the entry written with ``ttl`` reach its deadline."""
        if self.clock is not None:
            self.clock.advance(ttl)
            return
        remaining = self.pttl(kind, key)
        assert 0 < remaining <= math.ceil(ttl * 1000), remaining
        assert self.raw is not None
        self.raw.pexpireat(self.redis_key(kind, key), 1)


def every_operation(store: Store) -> list[Callable[[], Awaitable[object]]]:
    """One call of each Store method, not yet started."""
    return [
        lambda: store.add(Kind.CHALLENGE, "n1", b"v", 60),
        lambda: store.get(Kind.CHALLENGE, "n1"),
        lambda: store.take(Kind.CHALLENGE, "n1"),
        lambda: store.hit(Kind.COUNTER, "ip", 60),
        lambda: store.count(Kind.CHALLENGE),
        store.ping,
    ]
