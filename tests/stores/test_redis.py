"""Redis specifics: key layout, TTLs on every key, prefixes and failure mapping."""

from __future__ import annotations

import asyncio

import pytest
import redis

from keyproof.errors import Unavailable
from keyproof.stores.base import Kind
from keyproof.stores.redis import SCAN_COUNT, RedisStore

CHALLENGE, COUNTER = Kind.CHALLENGE, Kind.COUNTER


@pytest.mark.redis
async def test_keys_are_prefix_kind_key_with_a_ttl(
    redis_store: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    await redis_store.add(CHALLENGE, "n1", b"\x00v", 30)
    await redis_store.hit(COUNTER, "ip", 10)
    assert redis_client.get(f"{redis_prefix}challenge:n1") == b"\x00v"
    assert 0 < redis_client.pttl(f"{redis_prefix}challenge:n1") <= 30_000
    assert redis_client.get(f"{redis_prefix}counter:ip") == b"1"
    assert 0 < redis_client.pttl(f"{redis_prefix}counter:ip") <= 10_000
    assert sorted(redis_client.scan_iter(match=f"{redis_prefix}*")) == [
        f"{redis_prefix}challenge:n1".encode(),
        f"{redis_prefix}counter:ip".encode(),
    ]


@pytest.mark.redis
@pytest.mark.parametrize("kind", list(Kind), ids=str)
async def test_every_kind_of_key_gets_a_ttl(
    redis_store: RedisStore, redis_client: redis.Redis, redis_prefix: str, kind: Kind
) -> None:
    await redis_store.add(kind, "added", b"v", 45)
    await redis_store.hit(kind, "counted", 20)
    await redis_store.hit(kind, "counted", 20)
    ttls = {
        key.decode(): redis_client.pttl(key)
        for key in redis_client.scan_iter(match=f"{redis_prefix}*")
    }
    assert set(ttls) == {f"{redis_prefix}{kind}:added", f"{redis_prefix}{kind}:counted"}
    assert 0 < ttls[f"{redis_prefix}{kind}:added"] <= 45_000
    assert 0 < ttls[f"{redis_prefix}{kind}:counted"] <= 20_000


@pytest.mark.redis
async def test_sub_millisecond_ttls_round_up_to_one_millisecond(
    redis_store: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    assert await redis_store.add(CHALLENGE, "tiny", b"v", 0.0001)
    assert redis_client.pttl(f"{redis_prefix}challenge:tiny") in {-2, 0, 1}


@pytest.mark.redis
async def test_hit_gives_a_counter_without_ttl_one(
    redis_store: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(f"{redis_prefix}counter:ip", b"5")
    assert await redis_store.hit(COUNTER, "ip", 10) == 6
    assert 0 < redis_client.pttl(f"{redis_prefix}counter:ip") <= 10_000


@pytest.mark.redis
async def test_prefixes_separate_deployments(redis_url: str, redis_prefix: str) -> None:
    one = RedisStore(redis_url, prefix=f"{redis_prefix}one:")
    two = RedisStore(redis_url, prefix=f"{redis_prefix}two:")
    try:
        assert await one.add(CHALLENGE, "n1", b"one", 60)
        assert await two.add(CHALLENGE, "n1", b"two", 60)
        assert await one.take(CHALLENGE, "n1") == b"one"
        assert await two.count(CHALLENGE) == 1
        assert await one.count(CHALLENGE) == 0
    finally:
        await one.close()
        await two.close()


@pytest.mark.redis
async def test_count_spans_several_scan_rounds(redis_store: RedisStore) -> None:
    total = SCAN_COUNT * 2 + 17
    for start in range(0, total, 500):
        await asyncio.gather(
            *(
                redis_store.add(CHALLENGE, f"n{i}", b"v", 60)
                for i in range(start, min(start + 500, total))
            )
        )
    await redis_store.add(Kind.REVOKED, "n0", b"v", 60)
    assert await redis_store.count(CHALLENGE) == total


@pytest.mark.redis
async def test_a_server_error_is_unavailable(
    redis_store: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(f"{redis_prefix}counter:ip", b"not a number", px=60_000)
    with pytest.raises(Unavailable) as caught:
        await redis_store.hit(COUNTER, "ip", 10)
    assert isinstance(caught.value.__cause__, redis.ResponseError)


def test_the_prefix_may_not_be_empty() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="")
