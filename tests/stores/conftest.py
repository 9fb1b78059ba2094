"""Fixtures yielding each backend wrapped in a :class:`Backend`.

The parametrized fixture is synchronous so that it may pull in the async
``redis_store`` fixture with ``getfixturevalue``; ``backend`` closes what it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyproof.stores.memory import MemoryStore
from keyproof.stores.sqlite import SqliteStore

from .harness import START, Backend, FrozenClock

ALL = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def _make(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    clock = FrozenClock(START)
    if name == "memory":
        return Backend(name, MemoryStore(clock=clock), clock=clock)
    if name == "sqlite":
        return Backend(name, SqliteStore(tmp_path / "store.db", clock=clock), clock=clock)
    return Backend(
        name,
        request.getfixturevalue("redis_store"),
        raw=request.getfixturevalue("redis_client"),
        prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture(params=ALL)
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _make(request.param, request, tmp_path)


@pytest.fixture
async def backend(any_backend: Backend) -> AsyncIterator[Backend]:
    """Every backend in turn."""
    yield any_backend
    await any_backend.store.close()
