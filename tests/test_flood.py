"""A challenge flood keeps memory and store size bounded, and the global cap holds."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from keyproof.config import Settings
from keyproof.errors import RateLimited
from keyproof.keys import KeySet
from keyproof.service import Service
from keyproof.stores.base import Kind
from keyproof.stores.memory import PURGE_BATCH, MemoryStore

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
        challenge_limit_per_account=FLOOD,
        max_challenges_per_account=FLOOD,
        max_challenges=FLOOD,
    )
    store = MemoryStore(clock=clock)
    service = Service(flood_settings, store, keyset, clock)
    accounts = [f"eip155:1:0x{secrets.token_hex(20)}" for _ in range(ACCOUNTS)]
    ips = [f"198.51.{i // 256}.{i % 256}" for i in range(IPS)]

    for i in range(FLOOD):
        await service.challenge(accounts[i % ACCOUNTS], client_ip=ips[i % IPS])
    assert await store.count(Kind.CHALLENGE) == FLOOD
    with pytest.raises(RateLimited) as refused:
        await service.challenge(accounts[0], client_ip="203.0.113.1")
    assert refused.value.code == "too_many_challenges"
    assert await store.count(Kind.CHALLENGE) == FLOOD

    counters = ACCOUNTS * 2 + IPS + 2  # per-account rate and outstanding, per IP, global, IP
    assert store.size <= FLOOD + counters

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
