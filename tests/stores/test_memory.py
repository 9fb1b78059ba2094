"""MemoryStore specifics: the entry cap and amortized purging."""

from __future__ import annotations

import pytest

from keyproof.errors import Unavailable
from keyproof.stores.base import Kind
from keyproof.stores.memory import DEFAULT_MAX_ENTRIES, PURGE_BATCH, MemoryStore

from .harness import START, FrozenClock

CHALLENGE, COUNTER = Kind.CHALLENGE, Kind.COUNTER


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def test_default_cap_is_one_million() -> None:
    assert DEFAULT_MAX_ENTRIES == 1_000_000


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)


async def test_a_full_store_refuses_new_entries(clock: FrozenClock) -> None:
    store = MemoryStore(max_entries=3, clock=clock)
    for key in ("a", "b", "c"):
        assert await store.add(CHALLENGE, key, b"v", 60)
    with pytest.raises(Unavailable) as caught:
        await store.add(CHALLENGE, "d", b"v", 60)
    assert caught.value.code == "store_unavailable"
    with pytest.raises(Unavailable) as caught:
        await store.hit(COUNTER, "ip", 60)
    assert caught.value.code == "store_unavailable"
    assert await store.add(CHALLENGE, "a", b"v", 60) is False
    assert await store.count(CHALLENGE) == 3
    assert await store.get(CHALLENGE, "d") is None


async def test_taking_makes_room(clock: FrozenClock) -> None:
    store = MemoryStore(max_entries=2, clock=clock)
    await store.add(CHALLENGE, "a", b"v", 60)
    await store.add(CHALLENGE, "b", b"v", 60)
    await store.take(CHALLENGE, "a")
    assert await store.add(CHALLENGE, "c", b"v", 60)


async def test_expired_entries_make_room(clock: FrozenClock) -> None:
    store = MemoryStore(max_entries=PURGE_BATCH * 4, clock=clock)
    for i in range(PURGE_BATCH * 4):
        await store.add(CHALLENGE, f"old{i}", b"v", 1)
    clock.advance(1)
    assert await store.add(CHALLENGE, "new", b"v", 60)
    assert store.size == PURGE_BATCH * 3 + 1


async def test_a_full_store_purges_past_stale_deadlines_before_refusing(
    clock: FrozenClock,
) -> None:
    store = MemoryStore(max_entries=4, clock=clock)
    for i in range(PURGE_BATCH + 8):
        await store.add(CHALLENGE, f"gone{i}", b"v", 1)
        await store.take(CHALLENGE, f"gone{i}")
    for key in ("a", "b", "c", "d"):
        await store.add(CHALLENGE, key, b"v", 2)
    clock.advance(2)
    assert await store.add(CHALLENGE, "new", b"v", 60)
    assert store.size == 1


async def test_an_expired_key_may_be_rewritten_when_full(clock: FrozenClock) -> None:
    store = MemoryStore(max_entries=1, clock=clock)
    await store.add(CHALLENGE, "a", b"old", 1)
    clock.advance(1)
    assert await store.add(CHALLENGE, "a", b"new", 60)
    assert await store.get(CHALLENGE, "a") == b"new"


async def test_each_write_purges_a_bounded_batch_of_expired_entries(clock: FrozenClock) -> None:
    store = MemoryStore(clock=clock)
    expired = PURGE_BATCH * 10
    for i in range(expired):
        await store.add(CHALLENGE, f"old{i}", b"v", 1)
    clock.advance(2)
    await store.get(CHALLENGE, "old0")
    await store.take(CHALLENGE, "absent")
    assert store.size == expired
    await store.add(CHALLENGE, "new0", b"v", 60)
    assert store.size == expired - PURGE_BATCH + 1
    for i in range(1, 10):
        await store.hit(COUNTER, f"new{i}", 60)
    assert store.size == 10
    assert await store.count(CHALLENGE) == 1


async def test_purge_skips_entries_rewritten_with_a_later_deadline(clock: FrozenClock) -> None:
    store = MemoryStore(clock=clock)
    await store.add(CHALLENGE, "a", b"old", 1)
    clock.advance(1)
    await store.add(CHALLENGE, "a", b"new", 60)
    await store.add(CHALLENGE, "b", b"v", 60)
    assert await store.get(CHALLENGE, "a") == b"new"


async def test_churn_does_not_grow_the_deadline_lists(clock: FrozenClock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(20_000):
        await store.add(CHALLENGE, f"n{i}", b"v", 3600)
        await store.take(CHALLENGE, f"n{i}")
    assert store.size == 0
    assert store._refs <= 1024 + 1


async def test_counters_read_back_as_decimal_bytes(clock: FrozenClock) -> None:
    store = MemoryStore(clock=clock)
    for _ in range(12):
        await store.hit(COUNTER, "ip", 60)
    assert await store.take(COUNTER, "ip") == b"12"
