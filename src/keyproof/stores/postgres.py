"""Shared durable store on PostgreSQL (``postgresql://user@host:port/db?schema=keyproof``).

For several replicas that must not lose a revocation or a used action id whatever
crashes. Every operation is one SQL statement in its own transaction, so it is atomic
across replicas (a batch is one call of the schema's ``batch`` function): ``take`` is
``DELETE … RETURNING`` (of concurrent takes exactly one gets the row), ``add`` and
``hit`` one ``INSERT … ON CONFLICT … RETURNING`` each.
PostgreSQL owns the clock (``now()``), as Redis does: an entry is live while
``now() < expires_at``, every read says so in its ``WHERE``, and a background task
deletes expired rows in bounded batches.

Durability per kind (tables in :mod:`keyproof.stores._postgres_schema`): revoked token
ids, used action ids and any other kind are WAL-logged, committed before the call
returns (with the server's ``synchronous_commit``); challenges, used-nonce tombstones
and counters live in an unlogged table that a database crash empties, never rolls
back, so a consumed challenge cannot be redeemed again.

Failures (refused, timed out, pool exhausted, server error, schema too new) surface
as ``Unavailable("store_unavailable")``, so callers fail closed; the first failure
after a success is logged, and so is the recovery. A statement is not retried: the pool
replaces a connection the server closed on its next use, and a statement that failed in
flight may have committed (a consumed nonce stays consumed: fail closed). Keys must not
contain NUL (PostgreSQL text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import asyncpg

from keyproof.errors import ConfigurationError, Unavailable
from keyproof.stores import check_ttl
from keyproof.stores._postgres_schema import (
    DURABLE,
    EPHEMERAL,
    EPHEMERAL_KINDS,
    migrate,
    quoted,
    table_for,
)
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Op, Outcome, Take, check_ops, outcome_of

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_SCHEMA",
    "DEFAULT_TIMEOUT",
    "SWEEP_BATCH",
    "SWEEP_BATCHES",
    "SWEEP_INTERVAL",
    "PostgresStore",
]

DEFAULT_SCHEMA: Final = "keyproof"
DEFAULT_MAX_CONNECTIONS: Final = 10
DEFAULT_TIMEOUT: Final = 2.0
SWEEP_INTERVAL: Final = 10.0
SWEEP_BATCH: Final = 5000
SWEEP_BATCHES: Final = 20

_log = logging.getLogger("keyproof.stores.postgres")
_FAILURES = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# A counter reads back as ASCII decimal bytes, as in every other store.
_VALUE = "coalesce(value, convert_to(count::text, 'UTF8'))"


class _Statements(NamedTuple):
    add: str
    get: str
    take: str
    hit: str
    count_live: str
    sweep: str


def _statements(schema: str, table: str) -> _Statements:
    t = f"{quoted(schema)}.{table}"
    expired = "e.expires_at <= now()"
    return _Statements(
        add=f"INSERT INTO {t} AS e (kind, key, value, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))"
        " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, count = NULL,"
        f" expires_at = excluded.expires_at WHERE {expired} RETURNING true",
        get=f"SELECT {_VALUE} FROM {t} WHERE kind = $1 AND key = $2 AND expires_at > now()",
        take=f"DELETE FROM {t} WHERE kind = $1 AND key = $2 AND expires_at > now()"
        f" RETURNING {_VALUE}",
        # Every SET expression reads the row as it was before the update.
        hit=f"INSERT INTO {t} AS e (kind, key, count, expires_at)"
        " VALUES ($1, $2, 1, now() + make_interval(secs => $3))"
        " ON CONFLICT (kind, key) DO UPDATE SET value = NULL,"
        f" count = CASE WHEN {expired} THEN 1 ELSE coalesce(e.count, 0) + 1 END,"
        f" expires_at = CASE WHEN {expired} THEN excluded.expires_at ELSE e.expires_at END"
        " RETURNING count",
        count_live=f"SELECT count(*) FROM {t} WHERE kind = $1 AND expires_at > now()",
        # SKIP LOCKED: replicas sweeping at once share the work instead of waiting.
        sweep=f"WITH gone AS (DELETE FROM {t} WHERE (kind, key) IN (SELECT kind, key FROM {t}"
        " WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1)"
        " SELECT count(*) FROM gone",
    )


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Statements here leave no session state: skip asyncpg's reset round trip."""


class PostgresStore(Store):
    """:class:`Store` on a PostgreSQL database through a bounded asyncpg pool.

    ``dsn`` is a libpq-style URL that asyncpg accepts. The pool opens lazily, on
    :meth:`open` or the first operation, and then brings ``schema`` up to date
    (:func:`~keyproof.stores._postgres_schema.migrate`). At most ``max_connections``
    connections; an operation waits up to ``pool_timeout`` seconds for a free one,
    ``connect_timeout`` for a new one and ``command_timeout`` for its statement.
    Every ``sweep_interval`` seconds expired rows are deleted, ``sweep_batch`` per
    statement and at most ``sweep_batches`` statements per table.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
        command_timeout: float = DEFAULT_TIMEOUT,
        sweep_interval: float = SWEEP_INTERVAL,
        sweep_batch: int = SWEEP_BATCH,
        sweep_batches: int = SWEEP_BATCHES,
    ) -> None:
        for name, seconds in (
            ("pool_timeout", pool_timeout),
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
            ("sweep_interval", sweep_interval),
        ):
            check_ttl(seconds, name)
        if min(max_connections, sweep_batch, sweep_batches) < 1:
            raise ValueError("max_connections, sweep_batch and sweep_batches must be >= 1")
        self._dsn = dsn
        self._schema = schema
        self._sql = {table: _statements(schema, table) for table in (DURABLE, EPHEMERAL)}
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._sweep_interval = sweep_interval
        self._sweep_batch = sweep_batch
        self._sweep_batches = sweep_batches
        self._ping = f"SELECT 1 FROM {quoted(schema)}.{DURABLE} LIMIT 1"
        self._batch = f"SELECT {quoted(schema)}.batch($1, $2, $3, $4, $5, $6, $7)"
        self._pool: asyncpg.Pool | None = None
        self._ready = False
        self._opening: asyncio.Future[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._healthy = True
        self._closed = False

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this deployment's tables."""
        return self._schema

    async def open(self) -> None:
        """Connect and apply missing migrations (raises ``ConfigurationError`` if too new)."""
        await self._connected(strict=True)

    async def migrate(self) -> tuple[int, int]:
        """Apply missing migrations now; return the schema version before and after."""
        pool = await self._pool_or_new()
        try:
            async with pool.acquire(timeout=self._pool_timeout) as conn:
                return await migrate(conn, self._schema)
        except _FAILURES as exc:
            raise self._failed(exc) from exc

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        check_ttl(ttl)
        sql = self._sql[table_for(kind)].add
        return await self._fetch(sql, kind.value, key, value, float(ttl)) is not None

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return _bytes(await self._fetch(self._sql[table_for(kind)].get, kind.value, key))

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return _bytes(await self._fetch(self._sql[table_for(kind)].take, kind.value, key))

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        check_ttl(window, "window")
        sql = self._sql[table_for(kind)].hit
        return int(await self._fetch(sql, kind.value, key, float(window)))

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        """The whole batch in one call of the schema's ``batch`` function: one round
        trip, one transaction."""
        check_ops(ops)
        if not ops:
            return Outcome(())
        flat = await self._fetch(self._batch, *_columns(ops))
        return outcome_of(ops, flat)

    async def count(self, kind: Kind) -> int:
        return int(await self._fetch(self._sql[table_for(kind)].count_live, kind.value))

    async def ping(self) -> None:
        await self._fetch(self._ping)

    async def sweep(self) -> int:
        """Delete expired rows now, within the batch bounds; return how many."""
        deleted = 0
        for sql in self._sql.values():
            for _ in range(self._sweep_batches):
                gone = int(await self._fetch(sql.sweep, self._sweep_batch))
                deleted += gone
                if gone < self._sweep_batch:
                    break
        return deleted

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=self._command_timeout)
            except _FAILURES:
                self._pool.terminate()

    async def _fetch(self, sql: str, *args: Any) -> Any:
        pool = await self._connected(strict=False)
        try:
            async with pool.acquire(timeout=self._pool_timeout) as conn:
                result = await conn.fetchval(sql, *args, timeout=self._command_timeout)
        except _FAILURES as exc:
            raise self._failed(exc) from exc
        if not self._healthy:
            self._healthy = True
            _log.info("the PostgreSQL store is reachable again")
        return result

    async def _connected(self, *, strict: bool) -> asyncpg.Pool:
        """The pool, once migrations are applied.

        Concurrent callers share one attempt, so that a database that does not answer
        costs them one timeout, not one each. ``strict`` lets a too-new schema raise
        ``ConfigurationError`` (startup, the CLI); during a request it is a
        ``store_unavailable`` like any other failure.
        """
        pool = await self._pool_or_new()
        if self._ready:
            return pool
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._prepare())
        try:
            await asyncio.shield(self._opening)
        except ConfigurationError as exc:
            if strict:
                raise
            raise self._failed(exc) from exc
        return pool

    async def _prepare(self) -> None:
        await self.migrate()
        self._ready = True
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _pool_or_new(self) -> asyncpg.Pool:
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")
        if self._pool is None:
            # min_size 0: creating the pool connects nowhere, so it cannot fail here.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self._max_connections,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                reset=_no_reset,
            )
        return self._pool

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            with contextlib.suppress(Unavailable):  # logged by _failed; next round retries
                await self.sweep()

    def _failed(self, exc: BaseException) -> Unavailable:
        if self._healthy and not self._closed:
            self._healthy = False
            # Never the server's message: it may quote a key.
            sqlstate = getattr(exc, "sqlstate", None)
            if isinstance(exc, ConfigurationError):
                detail = f": {exc.description}"
            else:
                detail = f", SQLSTATE {sqlstate}" if sqlstate else ""
            _log.warning(
                "the PostgreSQL store failed (%s%s); failing closed until it answers",
                type(exc).__name__,
                detail,
            )
        if self._closed:
            return Unavailable("store_unavailable", "the store is closed")
        return Unavailable("store_unavailable", "the PostgreSQL store failed")


def _columns(ops: Sequence[Op]) -> tuple[list[Any], ...]:
    """The arguments of the ``batch`` function: one array per field, one row per op."""
    rows: list[tuple[str, Kind, str, bytes | None, float | None, int | None]] = []
    for op in ops:
        if isinstance(op, Add):
            rows.append(("a", op.kind, op.key, op.value, float(op.ttl), None))
        elif isinstance(op, Get):
            rows.append(("g", op.kind, op.key, None, None, op.below))
        elif isinstance(op, Take):
            rows.append(("t", op.kind, op.key, None, None, None))
        else:
            rows.append(("h", op.kind, op.key, None, float(op.window), op.limit))
            if op.over is not None:
                over = op.over
                rows.append(("o", over.kind, over.key, None, float(over.window), over.limit))
    columns = zip(*rows, strict=True)
    codes, kinds, keys, values, seconds, limits = (list(column) for column in columns)
    ephemeral = [kind in EPHEMERAL_KINDS for kind in kinds]
    return codes, [kind.value for kind in kinds], keys, values, seconds, limits, ephemeral


def _bytes(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None
