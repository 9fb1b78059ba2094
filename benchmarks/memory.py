"""What one outstanding challenge costs each store, issued through the real pipeline.

``n`` challenges for ``n`` different did:key accounts from one client IP (its rate
counters are then a constant, not a per-challenge cost), after ``n`` challenges for
other accounts: those fill keyproof's bounded per-process caches (at most 4,096 entries
each, full with the default ``n``), whose fixed size is then not counted per challenge:

- memory store: Python heap growth (tracemalloc), the challenges' texts dropped;
- SQLite: growth of the database's pages (page_count x page_size), after a checkpoint;
- Redis: ``MEMORY USAGE`` summed over the store's keys;
- PostgreSQL: growth of the store's tables and indexes (``pg_total_relation_size``).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey as NaclKey

from benchmarks import servers
from keyproof.crypto.didkey import encode_did_key
from keyproof.server.components import build_service
from keyproof.server.config import LIMIT_SETTINGS, Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.stores import open_store
from keyproof.stores.base import Store


def _accounts(n: int) -> list[str]:
    return [encode_did_key("ed25519", bytes(NaclKey.generate().verify_key)) for _ in range(n)]


async def _issue(store: Store, accounts: list[str], measure: Callable[[], Awaitable[int]]) -> int:
    """Bytes the store grew by while the second half of ``accounts`` got one outstanding
    challenge each."""
    settings = Settings(
        store="memory://",
        data_dir=Path(tempfile.mkdtemp(prefix="keyproof-bench-")),
        **dict.fromkeys(LIMIT_SETTINGS, servers.HIGH_LIMIT),
    )
    service = build_service(settings, store, KeySet([SigningKey.generate(int(time.time()))]))
    half = len(accounts) // 2
    for account in accounts[:half]:  # counters, tables and caches exist
        await service.challenge(account, client_ip="192.0.2.1")
    before = await measure()
    for account in accounts[half:]:
        await service.challenge(account, client_ip="192.0.2.1")
    return await measure() - before


async def _memory(accounts: list[str]) -> int:
    from keyproof.stores.memory import MemoryStore

    async def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        return await _issue(MemoryStore(), accounts, traced)
    finally:
        tracemalloc.stop()


async def _sqlite(accounts: list[str]) -> int:
    path = Path(tempfile.mkdtemp(prefix="keyproof-bench-")) / "keyproof.db"
    store = open_store(f"sqlite:///{path}")

    async def pages() -> int:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            count = conn.execute("PRAGMA page_count").fetchone()[0]
            return int(count * conn.execute("PRAGMA page_size").fetchone()[0])

    try:
        return await _issue(store, accounts, pages)
    finally:
        await store.close()


async def _redis(accounts: list[str]) -> int:
    import redis.asyncio as aioredis

    tag = uuid.uuid4().hex[:12]
    store = open_store(servers.store_url("redis", Path(), tag))
    client = aioredis.Redis.from_url(servers.REDIS_URL)

    async def usage() -> int:
        total = 0
        async for key in client.scan_iter(match=f"keyproof-bench:{tag}:*", count=1000):
            total += await client.memory_usage(key) or 0
        return total

    try:
        return await _issue(store, accounts, usage)
    finally:
        await store.close()
        await client.aclose()
        servers.cleanup("redis", tag)


async def _postgres(accounts: list[str]) -> int:
    import asyncpg

    tag = uuid.uuid4().hex[:12]
    store = open_store(servers.store_url("postgres", Path(), tag))
    conn = await asyncpg.connect(servers.POSTGRES_URL, timeout=5)
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind = 'r'"
    )

    async def size() -> int:
        return int(await conn.fetchval(query, f"keyproof_bench_{tag}"))

    try:
        return await _issue(store, accounts, size)
    finally:
        await store.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "keyproof_bench_{tag}" CASCADE')
        await conn.close()


MEASURES = {
    "memory": ("Python heap, tracemalloc", _memory),
    "sqlite": ("database pages", _sqlite),
    "redis": ("MEMORY USAGE of its keys", _redis),
    "postgres": ("table and index size", _postgres),
}


def run_all(n: int, stores: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    """Bytes per outstanding challenge on each reachable store."""
    accounts = _accounts(2 * n)
    rows, skipped = [], []
    for name in stores:
        reason = servers.store_reachable(name) if name != "memory" else None
        if reason is not None:
            skipped.append({"case": f"memory {name}", "reason": reason})
            continue
        what, measure = MEASURES[name]
        grown = asyncio.run(measure(accounts))
        rows.append(
            {
                "case": "bytes_per_challenge",
                "store": name,
                "measured": what,
                "challenges": n,
                "bytes_per_challenge": round(grown / n, 1),
            }
        )
    return rows, skipped
