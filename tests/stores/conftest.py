"""Fixtures yielding each backend wrapped in a :class:`Backend`.

The parametrized fixture is synchronous so that it may pull in the async
``redis_store`` and ``postgres_store`` fixtures with ``getfixturevalue``; ``backend``
closes what it was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyproof.stores.memory import MemoryStore
from keyproof.stores.sqlite import SqliteStore

from .harness import START, Backend, FrozenClock, PostgresInspector, RedisInspector

ALL = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _make(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    clock = FrozenClock(START)
    if name == "memory":
        return Backend(name, MemoryStore(clock=clock), clock=clock)
    if name == "sqlite":
        return Backend(name, SqliteStore(tmp_path / "store.db", clock=clock), clock=clock)
    if name == "redis":
        inspector = RedisInspector(
            request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix")
        )
        return Backend(name, request.getfixturevalue("redis_store"), inspector=inspector)
    schema = request.getfixturevalue("postgres_schema")
    store = request.getfixturevalue("postgres_store")
    inspector = PostgresInspector(request.getfixturevalue("postgres_url"), schema)
    return Backend(name, store, inspector=inspector)


@pytest.fixture(params=ALL)
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _make(request.param, request, tmp_path)


@pytest.fixture
async def backend(any_backend: Backend) -> AsyncIterator[Backend]:
    """Every backend in turn."""
    yield any_backend
    await any_backend.store.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
