"""Embedded durable store on one SQLite file (``sqlite:///path/keyproof.db``).

Several worker processes on one host may share the file. Every operation is a single
SQL statement in autocommit mode, so SQLite's write lock makes it atomic across
processes: ``take`` is ``DELETE … RETURNING``, ``add`` and ``hit`` are one upsert each.

Durability. The database runs in WAL mode with ``synchronous=NORMAL`` by default: a
commit has reached the operating system before the call returns, so a process crash
(including SIGKILL) never loses it, and a consumed nonce never becomes redeemable again
after a worker dies. An operating-system crash or power loss may roll back the last
commits; choose ``synchronous=FULL`` (``?synchronous=full``), which fsyncs the WAL on
every commit, when that matters more than write latency. WAL needs a local filesystem,
not a network share (https://sqlite.org/wal.html).

Each store owns one connection, used only by one dedicated thread; coroutines hand
their statement to that thread with ``run_in_executor``. A cancelled caller does not
cancel a statement already queued: a ``take`` may still consume, which fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from keyproof._files import require_private
from keyproof._time import Clock
from keyproof.errors import Unavailable
from keyproof.stores import check_ttl
from keyproof.stores._sqlite_schema import migrate
from keyproof.stores.base import Kind, Store

__all__ = ["PURGE_BATCH", "PURGE_EVERY", "SqliteStore"]

PURGE_EVERY: Final = 256
PURGE_BATCH: Final = 512

_T = TypeVar("_T")
_log = logging.getLogger("keyproof.stores.sqlite")

_ADD = (
    "INSERT INTO entries (kind, key, value, expires_at) VALUES (:kind, :key, :value, :expires)"
    " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,"
    " expires_at = excluded.expires_at WHERE entries.expires_at <= :now RETURNING 1"
)
_GET = (
    "SELECT CAST(value AS BLOB) FROM entries"
    " WHERE kind = :kind AND key = :key AND expires_at > :now"
)
_TAKE = (
    "DELETE FROM entries WHERE kind = :kind AND key = :key AND expires_at > :now"
    " RETURNING CAST(value AS BLOB)"
)
# Every SET expression reads the row as it was before the update.
_HIT = (
    "INSERT INTO entries (kind, key, value, expires_at) VALUES (:kind, :key, 1, :expires)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " value = CASE WHEN entries.expires_at <= :now THEN 1 ELSE entries.value + 1 END,"
    " expires_at = CASE WHEN entries.expires_at <= :now"
    " THEN excluded.expires_at ELSE entries.expires_at END"
    " RETURNING value"
)
_COUNT = "SELECT count(*) FROM entries WHERE kind = :kind AND expires_at > :now"
_PURGE = (
    "DELETE FROM entries WHERE (kind, key) IN"
    " (SELECT kind, key FROM entries WHERE expires_at <= :now LIMIT :limit)"
)


class SqliteStore(Store):
    """:class:`Store` on a SQLite file, created (mode 0600, parent directories 0700) if absent.

    Opening blocks until the file is ready (a startup step): an existing file open to
    group or others is refused (``insecure_permissions``) and an older layout is migrated
    forward (:mod:`keyproof.stores._sqlite_schema`). ``busy_timeout`` is how
    long a write waits for another process's lock before failing. ``clock`` gives the
    current time in seconds; an entry is live while ``clock() < expires_at``. Counters
    are stored as integers and read back by :meth:`get` and :meth:`take` as ASCII
    decimal bytes, as Redis does.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        busy_timeout: float = 5.0,
        clock: Clock = time.time,
    ) -> None:
        if synchronous.lower() not in {"normal", "full"}:
            raise ValueError("synchronous must be 'normal' or 'full'")
        self._path = os.fspath(path)
        require_private(self._path)
        self._clock = clock
        self._writes = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyproof-sqlite")
        future = self._executor.submit(self._connect, synchronous.upper(), busy_timeout)
        try:
            self._conn = future.result()
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown(wait=False)
            raise Unavailable("store_unavailable", "the SQLite store cannot be opened") from exc

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        check_ttl(ttl)
        now = self._clock()
        params = {"kind": kind.value, "key": key, "value": value, "expires": now + ttl, "now": now}
        return bool(await self._write(_ADD, params, now))

    async def get(self, kind: Kind, key: str) -> bytes | None:
        rows = await self._run(self._execute, _GET, self._where(kind, key))
        return bytes(rows[0][0]) if rows else None

    async def take(self, kind: Kind, key: str) -> bytes | None:
        now = self._clock()
        rows = await self._write(_TAKE, {"kind": kind.value, "key": key, "now": now}, now)
        return bytes(rows[0][0]) if rows else None

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        check_ttl(window, "window")
        now = self._clock()
        params = {"kind": kind.value, "key": key, "expires": now + window, "now": now}
        rows = await self._write(_HIT, params, now)
        return int(rows[0][0])

    async def count(self, kind: Kind) -> int:
        rows = await self._run(self._execute, _COUNT, {"kind": kind.value, "now": self._clock()})
        return int(rows[0][0])

    async def ping(self) -> None:
        await self._run(self._execute, "SELECT 1 FROM entries LIMIT 1", {})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error:
            _log.warning("closing the SQLite store failed", exc_info=True)
        finally:
            self._executor.shutdown(wait=False)

    def _where(self, kind: Kind, key: str) -> dict[str, Any]:
        return {"kind": kind.value, "key": key, "now": self._clock()}

    async def _write(self, sql: str, params: dict[str, Any], now: float) -> list[Any]:
        return await self._run(self._execute_and_purge, sql, params, now)

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, func, *args)
        except sqlite3.Error as exc:
            raise Unavailable("store_unavailable", "the SQLite store failed") from exc

    # Everything below runs on the store's own thread.

    def _connect(self, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
        _create_file(self._path)
        conn = sqlite3.connect(self._path, timeout=busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL is required")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _execute(self, sql: str, params: dict[str, Any]) -> list[Any]:
        # fetchall: a RETURNING statement only completes once every row is read.
        cursor = self._conn.execute(sql, params)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def _execute_and_purge(self, sql: str, params: dict[str, Any], now: float) -> list[Any]:
        rows = self._execute(sql, params)
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self._purge(now)
        return rows

    def _purge(self, now: float) -> None:
        """Best effort: the write before it has committed and must not be reported failed."""
        try:
            self._execute(_PURGE, {"now": now, "limit": PURGE_BATCH})
        except sqlite3.Error:
            _log.warning("purging expired SQLite entries failed", exc_info=True)


def _create_file(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    # SQLite gives the -wal and -shm files the database file's permissions.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
