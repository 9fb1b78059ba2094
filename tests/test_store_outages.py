"""A store outage is logged with its cause (rate-limited), counted, and its end logged.

The store is a real SQLite file whose write lock another connection holds: writes fail
with ``database is locked`` until it lets go; reads keep working meanwhile (WAL), which
is the flapping case the rate limit is for.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from keyproof.errors import Unavailable
from keyproof.server._metrics import Metrics
from keyproof.server._storewatch import WatchedStore
from keyproof.stores.base import Kind
from keyproof.stores.sqlite import SqliteStore
from keyproof.testing import FrozenClock

INTERVAL = 30.0


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.db", busy_timeout=0.05)
    yield store
    await store.close()


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection, ready to take the write lock with BEGIN IMMEDIATE."""
    conn = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def store_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "keyproof.server.store"
    ]


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def fail_writes(store: WatchedStore, n: int) -> None:
    for i in range(n):
        with pytest.raises(Unavailable):
            await store.add(Kind.CHALLENGE, f"k{i}", b"v", 60)


async def test_a_store_outage_is_logged_once_with_its_cause_and_counted(
    sqlite: SqliteStore, lock: sqlite3.Connection, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="keyproof.server.store")
    clock = FrozenClock(1000.0)
    metrics = Metrics(["/v1/challenge"])
    store = WatchedStore(sqlite, metrics, interval=INTERVAL, clock=clock)
    assert await store.add(Kind.CHALLENGE, "before", b"v", 60)
    assert value(metrics, "keyproof_store_up") == 1.0

    lock.execute("BEGIN IMMEDIATE")
    await fail_writes(store, 10)
    assert store_lines(caplog) == [
        ("ERROR", "store unavailable: OperationalError: database is locked")
    ]
    assert value(metrics, "keyproof_store_failures_total", operation="add") == 10
    assert value(metrics, "keyproof_store_up") == 0.0

    clock.advance(INTERVAL)
    await fail_writes(store, 1)
    assert len(store_lines(caplog)) == 2, "one more line once the interval has passed"
    assert caplog.records[-1].fields["failed_calls"] == 10  # type: ignore[attr-defined]

    clock.advance(5)
    lock.execute("ROLLBACK")
    assert await store.add(Kind.CHALLENGE, "after", b"v", 60)
    assert store_lines(caplog)[-1] == ("WARNING", "store available again after 35.0 s")
    assert value(metrics, "keyproof_store_up") == 1.0
    assert await store.get(Kind.CHALLENGE, "before") == b"v"


async def test_a_flapping_store_cannot_flood_the_log(
    sqlite: SqliteStore, lock: sqlite3.Connection, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="keyproof.server.store")
    clock = FrozenClock(1000.0)
    store = WatchedStore(sqlite, Metrics([]), interval=INTERVAL, clock=clock)
    lock.execute("BEGIN IMMEDIATE")
    for _ in range(30):  # writes fail, reads still succeed: down, up, down, up, ...
        await fail_writes(store, 1)
        assert await store.get(Kind.CHALLENGE, "absent") is None
        clock.advance(0.1)
    assert [level for level, _ in store_lines(caplog)] == ["ERROR", "WARNING"]
