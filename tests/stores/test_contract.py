"""The Store contract, run against every backend (specs/protocol.md §8)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from keyproof.errors import RefreshRejected, Unavailable
from keyproof.server.sessions import Sessions
from keyproof.stores.base import Kind, Store

from .harness import Backend, every_operation

CHALLENGE, COUNTER = Kind.CHALLENGE, Kind.COUNTER
LONG_UNICODE_KEY = ("ключ-🔑-鍵-κλειδί-" * 12)[:200]
AWKWARD_KEYS = ["a", "a:b", "*", "[x]?", "with space", "ends-with:", LONG_UNICODE_KEY]
VALUES = [b"", b"\x00", b"\x00\x01\xff\x00", bytes(range(256)), b"\x00" * 4096]


async def test_add_inserts_only_when_absent(backend: Backend) -> None:
    store = backend.store
    assert await store.add(CHALLENGE, "n1", b"first", 60) is True
    assert await store.add(CHALLENGE, "n1", b"second", 60) is False
    assert await store.get(CHALLENGE, "n1") == b"first"


async def test_add_succeeds_again_after_expiry(backend: Backend) -> None:
    store = backend.store
    assert await store.add(CHALLENGE, "n1", b"old", 5)
    await backend.expire(CHALLENGE, "n1", 5)
    assert await store.get(CHALLENGE, "n1") is None
    assert await store.add(CHALLENGE, "n1", b"new", 5) is True
    assert await store.get(CHALLENGE, "n1") == b"new"


async def test_add_sets_a_ttl_no_longer_than_requested(backend: Backend) -> None:
    store = backend.store
    assert await store.add(CHALLENGE, "short", b"v", 0.25)
    if backend.clock is None:
        assert 0 < await backend.pttl(CHALLENGE, "short") <= 250
        return
    backend.clock.advance(0.2)
    assert await store.get(CHALLENGE, "short") == b"v"
    backend.clock.advance(0.05)
    assert await store.get(CHALLENGE, "short") is None


async def test_get_missing_is_none(backend: Backend) -> None:
    assert await backend.store.get(CHALLENGE, "absent") is None


async def test_get_does_not_modify(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"v", 60)
    for _ in range(3):
        assert await store.get(CHALLENGE, "n1") == b"v"
    assert await store.count(CHALLENGE) == 1
    assert await store.take(CHALLENGE, "n1") == b"v"


async def test_take_returns_the_value_once(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"v", 60)
    assert await store.take(CHALLENGE, "n1") == b"v"
    assert await store.take(CHALLENGE, "n1") is None
    assert await store.get(CHALLENGE, "n1") is None
    assert await store.add(CHALLENGE, "n1", b"again", 60) is True


async def test_take_missing_is_none(backend: Backend) -> None:
    assert await backend.store.take(CHALLENGE, "absent") is None


async def test_take_expired_is_none(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"v", 5)
    await backend.expire(CHALLENGE, "n1", 5)
    assert await store.take(CHALLENGE, "n1") is None


async def test_hit_counts_within_a_window(backend: Backend) -> None:
    store = backend.store
    assert [await store.hit(COUNTER, "ip", 60) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert await store.get(COUNTER, "ip") == b"5"


async def test_hit_restarts_after_the_window(backend: Backend) -> None:
    store = backend.store
    for _ in range(3):
        await store.hit(COUNTER, "ip", 10)
    await backend.expire(COUNTER, "ip", 10)
    assert await store.hit(COUNTER, "ip", 10) == 1
    assert await store.hit(COUNTER, "ip", 10) == 2


async def test_hit_does_not_extend_the_window(backend: Backend) -> None:
    store = backend.store
    await store.hit(COUNTER, "ip", 10)
    if backend.clock is None:
        first = await backend.pttl(COUNTER, "ip")
        await store.hit(COUNTER, "ip", 10)
        assert 0 < await backend.pttl(COUNTER, "ip") <= first <= 10_000
        return
    backend.clock.advance(6)
    assert await store.hit(COUNTER, "ip", 10) == 2
    backend.clock.advance(4)
    assert await store.hit(COUNTER, "ip", 10) == 1


async def test_kinds_are_separate_namespaces(backend: Backend) -> None:
    store = backend.store
    for kind in Kind:
        assert await store.add(kind, "same", kind.value.encode(), 60) is True
    assert await store.take(Kind.CHALLENGE, "same") == b"challenge"
    for kind in set(Kind) - {Kind.CHALLENGE}:
        assert await store.get(kind, "same") == kind.value.encode()
        assert await store.count(kind) == 1
    assert await store.count(Kind.CHALLENGE) == 0


async def test_count_counts_live_entries_of_one_kind(backend: Backend) -> None:
    store = backend.store
    assert await store.count(CHALLENGE) == 0
    await store.add(CHALLENGE, "short", b"v", 5)
    for key in ("a", "b", "c"):
        await store.add(CHALLENGE, key, b"v", 60)
    await store.add(Kind.REVOKED, "a", b"v", 60)
    assert await store.count(CHALLENGE) == 4
    await store.take(CHALLENGE, "a")
    assert await store.count(CHALLENGE) == 3
    await backend.expire(CHALLENGE, "short", 5)
    assert await store.count(CHALLENGE) == 2
    assert await store.count(Kind.REVOKED) == 1


@pytest.mark.parametrize("ttl", [0, -1, -0.001, math.nan, math.inf, -math.inf])
async def test_non_positive_or_non_finite_ttl_is_a_programming_error(
    backend: Backend, ttl: float
) -> None:
    store = backend.store
    with pytest.raises(ValueError, match="ttl"):
        await store.add(CHALLENGE, "n1", b"v", ttl)
    with pytest.raises(ValueError, match="window"):
        await store.hit(COUNTER, "ip", ttl)
    assert await store.count(CHALLENGE) == 0
    assert await store.count(COUNTER) == 0


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{len(v)}-bytes")
async def test_values_are_arbitrary_bytes(backend: Backend, value: bytes) -> None:
    store = backend.store
    assert await store.add(CHALLENGE, "n1", value, 60)
    assert await store.get(CHALLENGE, "n1") == value
    assert await store.take(CHALLENGE, "n1") == value
    assert await store.take(CHALLENGE, "n1") is None


async def test_keys_may_be_long_unicode_and_contain_pattern_characters(
    backend: Backend,
) -> None:
    store = backend.store
    for key in AWKWARD_KEYS:
        assert await store.add(CHALLENGE, key, key.encode(), 60), key
    assert await store.count(CHALLENGE) == len(AWKWARD_KEYS)
    for key in AWKWARD_KEYS:
        assert await store.get(CHALLENGE, key) == key.encode()
        assert await store.take(CHALLENGE, key) == key.encode()
    assert await store.count(CHALLENGE) == 0


async def warm_up(store: Store, calls: int) -> None:
    """Open enough pooled connections that concurrent calls really run side by side."""
    await asyncio.gather(*(store.ping() for _ in range(calls)))


async def test_concurrent_takes_have_exactly_one_winner(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"v", 60)
    await warm_up(store, 50)
    results = await asyncio.gather(*(store.take(CHALLENGE, "n1") for _ in range(50)))
    assert results.count(b"v") == 1
    assert results.count(None) == 49


async def test_concurrent_adds_have_exactly_one_winner(backend: Backend) -> None:
    store = backend.store
    await warm_up(store, 50)
    results = await asyncio.gather(
        *(store.add(CHALLENGE, "n1", str(i).encode(), 60) for i in range(50))
    )
    assert results.count(True) == 1
    assert await store.get(CHALLENGE, "n1") == str(results.index(True)).encode()


async def test_concurrent_hits_count_every_hit(backend: Backend) -> None:
    store = backend.store
    await warm_up(store, 50)
    results = await asyncio.gather(*(store.hit(COUNTER, "ip", 60) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))


async def test_open_is_idempotent_and_keeps_what_was_written(backend: Backend) -> None:
    store = backend.store
    await store.open()
    assert await store.add(CHALLENGE, "n1", b"v", 60)
    await store.open()
    assert await store.get(CHALLENGE, "n1") == b"v"


async def test_ping_succeeds_on_an_open_store(backend: Backend) -> None:
    assert await backend.store.ping() is None


async def test_a_closed_store_is_unavailable(backend: Backend) -> None:
    store = backend.store
    await store.add(CHALLENGE, "n1", b"v", 60)
    await store.close()
    await store.close()
    for call in every_operation(store):
        with pytest.raises(Unavailable) as caught:
            await call()
        assert caught.value.code == "store_unavailable"


@pytest.mark.parametrize("kind", list(Kind), ids=lambda kind: kind.value)
async def test_every_kind_keeps_takes_and_expires_its_entries(backend: Backend, kind: Kind) -> None:
    store = backend.store
    assert await store.add(kind, "k", b"v", 30) is True
    assert await store.add(kind, "k", b"w", 30) is False
    assert await store.get(kind, "k") == b"v"
    assert await store.take(kind, "k") == b"v"
    assert await store.take(kind, "k") is None
    assert await store.add(kind, "k", b"again", 30) is True
    await backend.expire(kind, "k", 30)
    assert await store.get(kind, "k") is None
    assert await store.count(kind) == 0


def _sessions_on(backend: Backend) -> Sessions:
    """Sessions over the backend, on its clock (Redis and PostgreSQL keep wall time)."""
    return Sessions(backend.store, ttl=3600, idle_ttl=600, clock=backend.clock or time.time)


async def test_sessions_rotate_once_among_concurrent_refreshes(backend: Backend) -> None:
    sessions = _sessions_on(backend)
    record, token = await sessions.start(
        sub="did:key:z6Mk", audience="https://a", scopes=("a:b",), jkt="j" * 43
    )
    assert await sessions.lookup(token) == record
    await warm_up(backend.store, 50)
    results = await asyncio.gather(
        *(sessions.rotate(token, record) for _ in range(50)), return_exceptions=True
    )
    successors = [r for r in results if isinstance(r, str)]
    reused = [r for r in results if isinstance(r, RefreshRejected)]
    assert len(successors) == 1
    assert len(reused) == 49
    assert {r.code for r in reused} == {"refresh_token_reused"}
    # Reuse ended the session on this store, for every replica that shares it.
    assert await sessions.is_revoked(record.sid)
    with pytest.raises(RefreshRejected) as caught:
        await sessions.check_live(await sessions.lookup(successors[0]))
    assert caught.value.code == "session_revoked"


async def test_sessions_revoke_a_refresh_token_once(backend: Backend) -> None:
    sessions = _sessions_on(backend)
    record, token = await sessions.start(
        sub="did:key:z6Mk", audience="https://a", scopes=(), jkt="j" * 43
    )
    assert await sessions.revoke_token(token) is True
    assert await sessions.revoke_token(token) is False
    assert await sessions.is_revoked(record.sid)
    with pytest.raises(RefreshRejected) as caught:
        await sessions.lookup(token)
    assert caught.value.code == "refresh_token_invalid"
