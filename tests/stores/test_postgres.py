"""PostgreSQL specifics: tables per durability, migrations, schemas, the sweep, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from keyproof.errors import ConfigurationError, Unavailable
from keyproof.stores import open_store
from keyproof.stores._postgres_schema import (
    DURABLE,
    EPHEMERAL,
    EPHEMERAL_KINDS,
    LATEST_VERSION,
    MIGRATIONS,
    migrate,
)
from keyproof.stores.base import Kind, Store
from keyproof.stores.postgres import PostgresStore

from postgres_server import OwnPostgres, drop_schema, with_schema

pytestmark = pytest.mark.postgres
CHALLENGE, COUNTER = Kind.CHALLENGE, Kind.COUNTER


@pytest.fixture
async def raw(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, to look behind the store's back."""
    conn = await asyncpg.connect(postgres_url)
    yield conn
    await conn.close()


async def rows(conn: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    found = await conn.fetch(f'SELECT kind, key FROM "{schema}".{table}')
    return {row["key"]: row["kind"] for row in found}


# --- tables ---------------------------------------------------------------------------


async def test_short_lived_kinds_are_unlogged_and_the_rest_durable(
    postgres_store: PostgresStore, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    for kind in Kind:
        await postgres_store.add(kind, f"{kind}-added", b"v", 60)
    persistence = dict(
        await raw.fetch(
            "SELECT c.relname, c.relpersistence::text FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            postgres_schema,
        )
    )
    assert persistence == {"schema_version": "p", DURABLE: "p", EPHEMERAL: "u"}
    ephemeral = await rows(raw, postgres_schema, EPHEMERAL)
    durable = await rows(raw, postgres_schema, DURABLE)
    assert set(ephemeral.values()) == {kind.value for kind in EPHEMERAL_KINDS}
    assert set(durable.values()) == {kind.value for kind in set(Kind) - EPHEMERAL_KINDS}
    # Revocations, used action ids and sessions survive a database crash.
    for kind in (Kind.REVOKED, Kind.ACTION, Kind.REFRESH, Kind.REFRESH_USED, Kind.SESSION_REVOKED):
        assert kind.value in durable.values()


async def test_a_counter_is_an_integer_column_read_back_as_decimal_bytes(
    postgres_store: PostgresStore, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    for _ in range(12):
        await postgres_store.hit(COUNTER, "ip", 60)
    stored = await raw.fetchrow(
        f'SELECT value, count FROM "{postgres_schema}".{EPHEMERAL} WHERE key = $1', "ip"
    )
    assert tuple(stored) == (None, 12)
    assert await postgres_store.take(COUNTER, "ip") == b"12"


async def test_reads_ignore_expired_rows_the_sweep_has_not_reached(
    postgres_store: PostgresStore, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    await postgres_store.add(Kind.REVOKED, "jti", b"v", 60)
    await raw.execute(f'UPDATE "{postgres_schema}".{DURABLE} SET expires_at = now()')
    assert await postgres_store.get(Kind.REVOKED, "jti") is None
    assert await postgres_store.take(Kind.REVOKED, "jti") is None
    assert await postgres_store.count(Kind.REVOKED) == 0
    assert await rows(raw, postgres_schema, DURABLE) == {"jti": "revoked"}


# --- migrations -----------------------------------------------------------------------


async def versions(conn: asyncpg.Connection, schema: str) -> list[int]:
    found = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
    return [row["version"] for row in found]


async def test_open_creates_the_schema_at_the_latest_version(
    postgres_store: PostgresStore, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    await postgres_store.open()
    await postgres_store.open()
    assert await versions(raw, postgres_schema) == list(range(1, LATEST_VERSION + 1))
    assert await postgres_store.migrate() == (LATEST_VERSION, LATEST_VERSION)


async def test_replicas_starting_together_migrate_once(
    postgres_url: str, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    stores = [PostgresStore(postgres_url, schema=postgres_schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await stores[0].add(CHALLENGE, "n1", b"v", 60)
        assert await stores[3].take(CHALLENGE, "n1") == b"v"
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert await versions(raw, postgres_schema) == list(range(1, LATEST_VERSION + 1))


async def test_forward_migrations_apply_in_order_from_the_recorded_version(
    postgres_store: PostgresStore, raw: asyncpg.Connection, postgres_schema: str
) -> None:
    await postgres_store.add(Kind.REVOKED, "kept", b"v", 60)
    later = (*MIGRATIONS, ("CREATE TABLE {s}.sessions (id text PRIMARY KEY)",))
    assert await migrate(raw, postgres_schema, later) == (LATEST_VERSION, LATEST_VERSION + 1)
    assert await migrate(raw, postgres_schema, later) == (LATEST_VERSION + 1,) * 2
    assert await versions(raw, postgres_schema) == list(range(1, LATEST_VERSION + 2))
    assert await raw.fetchval(f'SELECT count(*) FROM "{postgres_schema}".sessions') == 0
    assert await postgres_store.get(Kind.REVOKED, "kept") == b"v"


async def test_a_failing_migration_changes_nothing(
    raw: asyncpg.Connection, postgres_schema: str
) -> None:
    broken = (*MIGRATIONS, ("CREATE TABLE {s}.half (id text)", "this is not SQL"))
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await migrate(raw, postgres_schema, broken)
    assert (
        await raw.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", postgres_schema)
        == 0
    )


async def test_a_schema_newer_than_this_code_stops_startup_and_fails_requests_closed(
    postgres_url: str,
    raw: asyncpg.Connection,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    newer = (*MIGRATIONS, ("SELECT 1",))
    await migrate(raw, postgres_schema, newer)
    store = PostgresStore(postgres_url, schema=postgres_schema)
    try:
        with pytest.raises(ConfigurationError) as caught:
            await store.open()
        assert caught.value.code == "store_schema_too_new"
        with pytest.raises(Unavailable) as refused:
            await store.take(CHALLENGE, "n1")
        assert refused.value.code == "store_unavailable"
        assert isinstance(refused.value.__cause__, ConfigurationError)
        assert f"version {LATEST_VERSION + 1}" in caplog.text
    finally:
        await store.close()


# --- deployments sharing a database ---------------------------------------------------


async def test_schemas_separate_deployments(postgres_url: str, postgres_schema: str) -> None:
    one = open_store(with_schema(postgres_url, postgres_schema))
    two = open_store(with_schema(postgres_url, f"{postgres_schema}_two"))
    try:
        assert await one.add(CHALLENGE, "n1", b"one", 60)
        assert await two.add(CHALLENGE, "n1", b"two", 60)
        assert await one.take(CHALLENGE, "n1") == b"one"
        assert await two.count(CHALLENGE) == 1
        assert await one.count(CHALLENGE) == 0
    finally:
        await one.close()
        await two.close()
        drop_schema(postgres_url, f"{postgres_schema}_two")


# --- the sweep ------------------------------------------------------------------------


async def expire_every_row(conn: asyncpg.Connection, schema: str) -> None:
    for table in (DURABLE, EPHEMERAL):
        await conn.execute(f"UPDATE \"{schema}\".{table} SET expires_at = now() - interval '1 s'")


async def live_rows(conn: asyncpg.Connection, schema: str) -> int:
    counts = [
        await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')
        for table in (DURABLE, EPHEMERAL)
    ]
    return sum(counts)


async def test_the_sweep_deletes_expired_rows_in_bounded_batches(
    postgres_url: str, postgres_schema: str, raw: asyncpg.Connection
) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema, sweep_batch=10, sweep_batches=2)
    try:
        for i in range(35):
            await store.add(CHALLENGE, f"old{i}", b"v", 60)
        for i in range(5):
            await store.add(Kind.REVOKED, f"old{i}", b"v", 60)
        await expire_every_row(raw, postgres_schema)
        await store.add(Kind.REVOKED, "live", b"v", 60)
        await store.hit(COUNTER, "live", 60)
        assert await store.sweep() == 5 + 2 * 10  # at most two batches of ten per table
        assert await store.sweep() == 15
        assert await store.sweep() == 0
        assert await live_rows(raw, postgres_schema) == 2
        assert await store.get(Kind.REVOKED, "live") == b"v"
    finally:
        await store.close()


async def test_the_background_sweep_runs_by_itself(
    postgres_url: str, postgres_schema: str, raw: asyncpg.Connection
) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema, sweep_interval=0.05)
    try:
        for i in range(20):
            await store.add(Kind.ACTION, f"old{i}", b"v", 60)
        await store.add(Kind.ACTION, "live", b"v", 60)
        await expire_every_row(raw, postgres_schema)
        await store.add(Kind.ACTION, "live", b"v", 60)
        for _ in range(200):  # bounded: 10 s
            if await live_rows(raw, postgres_schema) == 1:
                break
            await asyncio.sleep(0.05)
        assert await live_rows(raw, postgres_schema) == 1
        assert await store.get(Kind.ACTION, "live") == b"v"
    finally:
        await store.close()


# --- failures -------------------------------------------------------------------------


async def test_callers_share_one_attempt_to_reach_a_silent_database() -> None:
    """A database that never answers costs concurrent requests one timeout, not one each."""
    connections = 0

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_store(f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=0.2")
    try:
        calls = (store.take(CHALLENGE, f"n{i}") for i in range(20))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
        assert connections == 1
    finally:
        await store.close()
        server.close()
        await server.wait_closed()


async def until_a_statement_waits_for(conn: asyncpg.Connection, schema: str) -> None:
    """Bounded wait until some session is blocked on a row lock in ``schema``."""
    for _ in range(200):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE $1",
            f'%"{schema}"%',
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no statement ever waited for the lock")


async def test_an_exhausted_pool_is_unavailable_and_loses_nothing(
    postgres_url: str, postgres_schema: str, raw: asyncpg.Connection
) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema, max_connections=1, pool_timeout=0.1)
    lock = f'SELECT 1 FROM "{postgres_schema}".{EPHEMERAL} WHERE key = $1 FOR UPDATE'
    try:
        await store.add(CHALLENGE, "n1", b"v", 60)
        async with raw.transaction():
            await raw.execute(lock, "n1")
            holder = asyncio.ensure_future(store.take(CHALLENGE, "n1"))
            await until_a_statement_waits_for(raw, postgres_schema)
            with pytest.raises(Unavailable) as caught:
                await store.get(CHALLENGE, "n1")
            assert isinstance(caught.value.__cause__, TimeoutError)
        assert await holder == b"v"
        assert await store.count(CHALLENGE) == 0
    finally:
        await store.close()


async def test_a_statement_past_its_timeout_is_unavailable_and_rolled_back(
    postgres_url: str,
    postgres_schema: str,
    raw: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema, command_timeout=0.2)
    lock = f'SELECT 1 FROM "{postgres_schema}".{EPHEMERAL} WHERE key = $1 FOR UPDATE'
    try:
        await store.add(CHALLENGE, "n1", b"v", 60)
        async with raw.transaction():
            await raw.execute(lock, "n1")
            with pytest.raises(Unavailable) as caught:
                await store.take(CHALLENGE, "n1")
            assert isinstance(caught.value.__cause__, TimeoutError)
        assert await store.take(CHALLENGE, "n1") == b"v"
    finally:
        await store.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "keyproof.stores.postgres"]
    assert messages[0].startswith("the PostgreSQL store failed (TimeoutError)")
    assert messages[1] == "the PostgreSQL store is reachable again"


async def test_a_server_error_is_unavailable_and_logged_once(
    postgres_store: PostgresStore,
    raw: asyncpg.Connection,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await postgres_store.open()
    await raw.execute(f'DROP TABLE "{postgres_schema}".{EPHEMERAL}')
    for _ in range(3):
        with pytest.raises(Unavailable) as caught:
            await postgres_store.add(CHALLENGE, "n1", b"v", 60)
        assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)
    warnings = [r for r in caplog.records if r.name == "keyproof.stores.postgres"]
    assert len(warnings) == 1
    assert "SQLSTATE 42P01" in warnings[0].getMessage()
    assert await postgres_store.add(Kind.REVOKED, "jti", b"v", 60)


# --- a crash of the database ----------------------------------------------------------


async def until_answering(store: Store) -> None:
    for _ in range(200):  # bounded: 10 s
        try:
            await store.ping()
            return
        except Unavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("the store did not recover")


@pytest.mark.slow
async def test_a_database_crash_keeps_durable_entries_and_never_revives_a_consumed_nonce(
    own_postgres: OwnPostgres,
) -> None:
    store = PostgresStore(own_postgres.url)
    try:
        await store.add(Kind.REVOKED, "jti", b"1", 600)
        await store.add(Kind.ACTION, "action", b"1", 600)
        await store.add(CHALLENGE, "consumed", b"binding", 300)
        await store.add(Kind.USED_NONCE, "consumed", b"1", 300)
        assert await store.take(CHALLENGE, "consumed") == b"binding"
        await store.add(CHALLENGE, "pending", b"binding", 300)
        await store.hit(COUNTER, "ip", 60)

        own_postgres.crash()
        with pytest.raises(Unavailable):
            await store.get(Kind.REVOKED, "jti")
        own_postgres.start()
        await until_answering(store)  # the same store: no restart of keyproof

        assert await store.get(Kind.REVOKED, "jti") == b"1"
        assert await store.add(Kind.ACTION, "action", b"1", 600) is False
        assert await store.take(CHALLENGE, "consumed") is None
        # Crash recovery empties the unlogged table: outstanding challenges and
        # counters are gone, never rolled back to an older state.
        assert await store.get(CHALLENGE, "pending") is None
        assert await store.hit(COUNTER, "ip", 60) == 1
    finally:
        await store.close()
