"""Networked stores that cannot be reached fail every operation closed, whatever the cause."""

from __future__ import annotations

import pytest
import redis

from keyproof.errors import Unavailable
from keyproof.stores import open_store
from keyproof.stores.base import Kind
from keyproof.testing import free_port

from .harness import assert_all_unavailable

# {port} is a closed port, or a server that accepts connections and never answers.
URLS = {
    "redis": "redis://127.0.0.1:{port}/0?socket_timeout=0.05&socket_connect_timeout=0.05",
    "postgres": "postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=0.05",
}
TIMEOUTS: dict[str, type[BaseException]] = {"redis": redis.TimeoutError, "postgres": TimeoutError}


@pytest.mark.parametrize("backend", sorted(URLS))
async def test_a_refused_connection_is_unavailable(backend: str) -> None:
    store = open_store(URLS[backend].format(port=free_port()))
    try:
        await assert_all_unavailable(store)
    finally:
        await store.close()


@pytest.mark.parametrize("backend", sorted(URLS))
async def test_a_server_that_never_answers_is_unavailable(silent_server: int, backend: str) -> None:
    store = open_store(URLS[backend].format(port=silent_server))
    try:
        with pytest.raises(Unavailable) as caught:
            await store.take(Kind.CHALLENGE, "n1")
        assert isinstance(caught.value.__cause__, TIMEOUTS[backend])
        await assert_all_unavailable(store)
    finally:
        await store.close()
