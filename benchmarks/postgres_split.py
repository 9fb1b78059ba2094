"""Does keeping short-lived state out of PostgreSQL's WAL matter? Prints JSON.

    python -m benchmarks.postgres_split [--logins N] [--rounds R]

Logins (``benchmarks.logins``) with 1 and 16 in flight on:

- ``postgres``: the store as shipped, challenges, tombstones and counters in its
  unlogged table;
- ``postgres_all_logged``: the same store with every kind WAL-logged (the table
  choice patched for this measurement only);
- ``split_redis_postgres``: short-lived kinds in Redis, revocations and action ids in
  PostgreSQL, the split a setting could offer;
- ``redis`` alone, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

import uvloop

import keyproof.stores._postgres_schema as tables
from benchmarks.logins import POSTGRES_URL, REDIS_URL, _cleanup, _measure
from keyproof.stores import open_store
from keyproof.stores.base import Kind, Store


class SplitStore(Store):
    """Short-lived kinds in one store, every other kind in another."""

    def __init__(self, short: Store, durable: Store) -> None:
        self.short, self.durable = short, durable

    def _for(self, kind: Kind) -> Store:
        return self.short if kind in tables.EPHEMERAL_KINDS else self.durable

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        return await self._for(kind).add(kind, key, value, ttl)

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return await self._for(kind).get(kind, key)

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return await self._for(kind).take(kind, key)

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        return await self._for(kind).hit(kind, key, window)

    async def count(self, kind: Kind) -> int:
        return await self._for(kind).count(kind)

    async def ping(self) -> None:
        await self.short.ping()
        await self.durable.ping()

    async def close(self) -> None:
        await self.short.close()
        await self.durable.close()


def _variants(tag: str) -> dict[str, Callable[[], Store]]:
    def redis() -> Store:
        return open_store(f"{REDIS_URL}?prefix=keyproof-bench:{tag}:")

    def postgres() -> Store:
        return open_store(f"{POSTGRES_URL}?schema=keyproof_bench_{tag}")

    return {
        "postgres": postgres,
        "postgres_all_logged": postgres,
        "split_redis_postgres": lambda: SplitStore(redis(), postgres()),
        "redis": redis,
    }


async def _run(logins: int, rounds: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:12]
    shipped = tables.EPHEMERAL_KINDS
    best: dict[str, dict[str, float]] = {}
    try:
        for in_flight in (1, 16):
            for _ in range(rounds):
                for name, make in _variants(tag).items():  # interleaved
                    logged = name == "postgres_all_logged"
                    tables.EPHEMERAL_KINDS = frozenset() if logged else shipped
                    store = make()
                    try:
                        result = await _measure(store, logins, in_flight)
                    finally:
                        await store.close()
                        tables.EPHEMERAL_KINDS = shipped
                    case = f"{name}_{in_flight}_in_flight"
                    kept = best.get(case)
                    if kept is None or result["logins_per_second"] > kept["logins_per_second"]:
                        best[case] = result
    finally:
        await _cleanup(tag)
    return {"logins": logins, "rounds": rounds, "results": best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logins", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report = runner.run(_run(args.logins, args.rounds))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
