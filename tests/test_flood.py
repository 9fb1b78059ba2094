"""A challenge flood keeps memory and store size bounded, and expired entries are purged."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
import redis

from keyproof.errors import RateLimited
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.service import Service
from keyproof.stores.base import Kind, Store
from keyproof.stores.memory import PURGE_BATCH, MemoryStore
from keyproof.stores.redis import RedisStore
from keyproof.stores.sqlite import PURGE_BATCH as SQLITE_PURGE_BATCH
from keyproof.stores.sqlite import PURGE_EVERY as SQLITE_PURGE_EVERY
from keyproof.stores.sqlite import SqliteStore

from conftest import FrozenClock

FLOOD = 100_000
ACCOUNTS = 2_000
IPS = 250


@pytest.mark.slow
async def test_flood_of_challenges_is_capped_and_purged(
    settings: Settings, keyset: KeySet, clock: FrozenClock
):
    flood_settings = dataclasses.replace(
        settings,
        challenge_limit_per_ip=FLOOD,
        max_challenges=FLOOD,
    )
    store = MemoryStore(clock=clock)
    service = build_service(flood_settings, store, keyset, clock)
    accounts = [f"eip155:1:0x{secrets.token_hex(20)}" for _ in range(ACCOUNTS)]
    ips = [f"198.51.{i // 256}.{i % 256}" for i in range(IPS)]

    for i in range(FLOOD):
        await service.challenge(accounts[i % ACCOUNTS], client_ip=ips[i % IPS])
    assert await store.count(Kind.CHALLENGE) == FLOOD
    # Past the cap a network gets one challenge per TTL, then waits.
    await service.challenge(accounts[0], client_ip="203.0.113.1")
    with pytest.raises(RateLimited) as refused:
        await service.challenge(accounts[0], client_ip="203.0.113.1")
    assert refused.value.code == "too_many_challenges"
    assert await store.count(Kind.CHALLENGE) == FLOOD + 1

    counters = IPS + 3  # per IP; the newcomer's rate and pressure counters; global
    assert store.size == FLOOD + 1 + counters

    clock.advance(max(settings.challenge_ttl, settings.rate_window) + 1)
    assert await store.count(Kind.CHALLENGE) == 0
    assert await store.count(Kind.COUNTER) == 0
    # Expired entries are reclaimed PURGE_BATCH at a time as writes happen.
    for _ in range(store.size // PURGE_BATCH + 2):
        await store.add(Kind.CHALLENGE, "sweep", b"", 1)
        await store.take(Kind.CHALLENGE, "sweep")
    assert store.size == 0

    await service.challenge(accounts[0], client_ip="203.0.113.1")
    assert await store.count(Kind.CHALLENGE) == 1


# --- the durable backends -------------------------------------------------------------------

SMALL_FLOOD = 6_000
SMALL_ACCOUNTS = 500
SMALL_IPS = 50
SMALL_COUNTERS = SMALL_IPS + 1  # per client IP, and the global count


def _small_flood_service(settings: Settings, store: Store, keyset: KeySet, clock) -> Service:
    flood_settings = dataclasses.replace(
        settings,
        challenge_limit_per_ip=SMALL_FLOOD,
        max_challenges=SMALL_FLOOD,
    )
    return build_service(flood_settings, store, keyset, clock)


async def _small_flood(service: Service, batch: int = 1) -> None:
    accounts = [f"eip155:1:0x{secrets.token_hex(20)}" for _ in range(SMALL_ACCOUNTS)]
    ips = [f"198.51.100.{i}" for i in range(SMALL_IPS)]
    for start in range(0, SMALL_FLOOD, batch):
        await asyncio.gather(
            *(
                service.challenge(accounts[i % SMALL_ACCOUNTS], client_ip=ips[i % SMALL_IPS])
                for i in range(start, min(start + batch, SMALL_FLOOD))
            )
        )


def _rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])


@pytest.mark.slow
async def test_sqlite_rows_are_purged_after_the_ttl(
    settings: Settings, keyset: KeySet, clock: FrozenClock, tmp_path: Path
):
    path = tmp_path / "flood.db"
    store = SqliteStore(path, clock=clock)
    try:
        service = _small_flood_service(settings, store, keyset, clock)
        await _small_flood(service)
        assert _rows(path) == SMALL_FLOOD + SMALL_COUNTERS

        clock.advance(max(settings.challenge_ttl, settings.rate_window) + 1)
        assert await store.count(Kind.CHALLENGE) == 0
        # Writes purge up to PURGE_BATCH expired rows every PURGE_EVERY writes.
        rows = _rows(path)
        sweeps = (rows // SQLITE_PURGE_BATCH + 2) * SQLITE_PURGE_EVERY
        for i in range(sweeps // 2):
            await store.add(Kind.CHALLENGE, f"sweep{i}", b"", 1)
            await store.take(Kind.CHALLENGE, f"sweep{i}")
        deadline = time.monotonic() + 10  # the purge runs in the background
        while _rows(path) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert _rows(path) == 0

        await service.challenge(f"eip155:1:0x{secrets.token_hex(20)}", client_ip="203.0.113.1")
        assert await store.count(Kind.CHALLENGE) == 1
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.redis
async def test_redis_keys_of_a_flood_all_expire_within_the_ttl(
    settings: Settings,
    keyset: KeySet,
    clock: FrozenClock,
    redis_store: RedisStore,
    redis_client: redis.Redis,
    redis_prefix: str,
):
    service = _small_flood_service(settings, redis_store, keyset, clock)
    await _small_flood(service, batch=200)
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}*", count=1000))
    assert len(set(keys)) == SMALL_FLOOD + SMALL_COUNTERS
    assert await redis_store.count(Kind.CHALLENGE) == SMALL_FLOOD
    assert await redis_store.count(Kind.COUNTER) == SMALL_COUNTERS
    with redis_client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
        ttls = pipe.execute()
    longest = max(settings.challenge_ttl, settings.rate_window) * 1000
    assert all(0 < ttl <= longest for ttl in ttls), sorted(set(ttls))[:5]
