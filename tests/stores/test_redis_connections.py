"""The Redis store's own connections: bounded, never reused mid-reply, retried only
after a broken connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from redis.asyncio import BlockingConnectionPool

from keyproof.stores import _redis_connections
from keyproof.stores._redis_connections import Connections

from .harness import until

pytestmark = pytest.mark.redis
MakeConnections = Callable[..., Connections]


@pytest.fixture
async def make_connections(redis_url: str) -> AsyncIterator[MakeConnections]:
    made: list[Connections] = []

    def make(**settings: float) -> Connections:
        connections = Connections(BlockingConnectionPool.from_url(redis_url, **settings))
        made.append(connections)
        return connections

    yield make
    for connections in made:
        await connections.close()


def _clients(redis_client: redis.Redis, name: str) -> list[dict[str, str]]:
    return [c for c in redis_client.client_list() if c["name"] == name]


async def test_at_most_max_connections_are_opened(
    make_connections: MakeConnections, redis_client: redis.Redis
) -> None:
    name = f"kp-{uuid.uuid4().hex[:8]}"
    connections = make_connections(max_connections=3, client_name=name)
    replies = await asyncio.gather(*(connections.execute("ECHO", str(i)) for i in range(40)))
    assert replies == [str(i).encode() for i in range(40)]
    assert 1 <= len(_clients(redis_client, name)) <= 3


async def test_a_command_waits_for_a_free_connection_then_times_out(
    make_connections: MakeConnections, redis_prefix: str
) -> None:
    connections = make_connections(max_connections=1, timeout=0.1)
    blocked = asyncio.create_task(connections.execute("BLPOP", f"{redis_prefix}empty", 1))
    await asyncio.sleep(0.05)
    with pytest.raises(redis.TimeoutError, match="no free Redis connection"):
        await connections.execute("PING")
    assert await blocked is None  # BLPOP timed out on the server: the slot came back
    assert await connections.execute("PING") == b"PONG"


async def test_a_cancelled_command_never_hands_its_reply_to_the_next(
    make_connections: MakeConnections, redis_client: redis.Redis, redis_prefix: str
) -> None:
    name = f"kp-{uuid.uuid4().hex[:8]}"
    connections = make_connections(max_connections=1, client_name=name)
    key = f"{redis_prefix}list"
    waiting = asyncio.create_task(connections.execute("BLPOP", key, 5))
    await until(lambda: any(c["cmd"] == "blpop" for c in _clients(redis_client, name)))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: not _clients(redis_client, name))  # the server saw it go
    redis_client.rpush(key, b"meant for the cancelled caller")
    # The one connection was dropped: its pending BLPOP died with it.
    assert await connections.execute("PING") == b"PONG"
    assert await connections.execute("ECHO", "next") == b"next"
    assert redis_client.lrange(key, 0, -1) == [b"meant for the cancelled caller"]


async def test_a_broken_connection_is_retried_once_on_a_fresh_one(
    make_connections: MakeConnections, redis_client: redis.Redis
) -> None:
    name = f"kp-{uuid.uuid4().hex[:8]}"
    connections = make_connections(max_connections=1, client_name=name)
    assert await connections.execute("PING") == b"PONG"
    (old,) = _clients(redis_client, name)
    redis_client.client_kill_filter(_id=old["id"])
    assert await connections.execute("ECHO", "again") == b"again"
    (new,) = _clients(redis_client, name)
    assert new["id"] != old["id"]


async def test_after_a_restart_the_retry_never_meets_another_dead_connection(
    make_connections: MakeConnections,
    redis_client: redis.Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_redis_connections, "RETRY_DELAY", 0.3)
    name = f"kp-{uuid.uuid4().hex[:8]}"
    connections = make_connections(max_connections=3, client_name=name)
    key = f"{redis_prefix}list"
    await asyncio.gather(*(connections.execute("BLPOP", key, "0.05") for _ in range(3)))
    for client in _clients(redis_client, name):  # as a restart of Redis would
        redis_client.client_kill_filter(_id=client["id"])
    first = asyncio.create_task(connections.execute("ECHO", "first"))
    await asyncio.sleep(0.1)  # its first try failed; its retry waits
    # Meanwhile another request takes the connection the first one put back.
    second = asyncio.create_task(connections.execute("BLPOP", key, 1))
    assert await first == b"first"
    redis_client.rpush(key, b"x")
    assert await second == [key.encode(), b"x"]


async def test_an_error_reply_is_raised_and_the_connection_still_serves(
    make_connections: MakeConnections,
) -> None:
    connections = make_connections(max_connections=1)
    with pytest.raises(redis.ResponseError):
        await connections.execute("NO-SUCH-COMMAND")
    assert await connections.execute("PING") == b"PONG"


async def test_closed_connections_refuse_work_without_a_retry(
    make_connections: MakeConnections,
) -> None:
    connections = make_connections()
    assert await connections.execute("PING") == b"PONG"
    await connections.close()
    with pytest.raises(redis.RedisError, match="closed") as caught:
        await connections.execute("PING")
    assert not isinstance(caught.value, redis.ConnectionError)
