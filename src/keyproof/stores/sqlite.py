"""Embedded durable store on one SQLite file (``sqlite:///path/keyproof.db``).

Several worker processes on one host may share the file. Every write runs in a
transaction that holds SQLite's write lock, so it is atomic across processes: ``take``
is ``DELETE … RETURNING``, ``add`` one upsert, and ``hit`` an update of the live counter
or, when there is none, an upsert that starts it at 1.

Durability. The database runs in WAL mode with ``synchronous=NORMAL`` by default: a
commit has reached the operating system before the call returns, so a process crash
(including SIGKILL) never loses it, and a consumed nonce never becomes redeemable again
after a worker dies. An operating-system crash or power loss may roll back the last
commits; choose ``synchronous=FULL`` (``?synchronous=full``), which fsyncs the WAL on
every commit, when that matters more than write latency. WAL needs a local filesystem,
not a network share (https://sqlite.org/wal.html).

Batches (:meth:`SqliteStore.batch`) run as one transaction, ``BEGIN IMMEDIATE`` when
they write, so a batch takes the write lock once, up front, and never stops half-way
on a lock held by another process.

Each store owns two connections. A transaction runs on the event loop's thread, with
no busy wait: a short transaction on a local file costs less than handing it to a
thread. One that finds the file locked (``SQLITE_BUSY``: another worker process, or
this store's own purge) is rolled back whole and tried again on the loop after a short
sleep (``BUSY_RETRY_DELAYS``), the loop serving other requests meanwhile; only when
every retry found the lock taken does it go to the store's own thread, which waits up
to ``busy_timeout``. (Measured with two workers: a transaction on the thread holds the
write lock while it waits for the interpreter lock, up to its 5 ms switch interval, so
the other worker's transactions met the lock and queued behind it; retried on the loop,
two workers log in 1.3 times as fast as one, where the thread made them slower than one.)
The thread also purges expired rows (up to ``PURGE_BATCH`` per ``PURGE_EVERY`` writes)
and checkpoints the WAL, in the background, so that neither the loop nor the request
that made the ``PURGE_EVERY``-th write waits for the fsync; a read that meets a
checkpoint may still wait for it inside SQLite, beyond any busy timeout. A passive
checkpoint never blocks a writer, so under steady writes the log is never idle when it
ends and is never started over: once it holds ``WAL_RESTART_FRAMES`` pages, the thread
restarts it while this store's transactions wait (a few milliseconds: it flushes the
database file first, while they go on), which keeps the ``-wal`` file bounded. A reader
that keeps an old snapshot open (a shell, a backup) pins the log: the restart then
gives up after 100 ms and is tried again only once as many pages again have been
written.
With ``synchronous=FULL`` every commit fsyncs, so every transaction runs on the thread.
A cancelled caller does not cancel a transaction already handed to the thread: a
``take`` may still consume, which fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from keyproof._files import require_private
from keyproof._time import Clock
from keyproof.errors import Unavailable
from keyproof.stores import check_ttl
from keyproof.stores._sqlite_schema import migrate
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Get, Op, Outcome, check_ops, run_steps

__all__ = ["BUSY_RETRY_DELAYS", "PURGE_BATCH", "PURGE_EVERY", "WAL_RESTART_FRAMES", "SqliteStore"]

PURGE_EVERY: Final = 256
PURGE_BATCH: Final = 512
BUSY_RETRY_DELAYS: Final = (0.0002, 0.0005, 0.001, 0.002)
"""Seconds slept on the loop before each retry of a transaction that met the lock."""
WAL_RESTART_FRAMES: Final = 16384
"""WAL pages (64 MiB at 4 KiB) past which the log is started over. Each restart pauses
this store's transactions (1 to 7 ms measured), so it should come seldom: at 1,000
logins a second, once every 2 to 3 seconds."""
_RESTART_WAIT_MS: Final = 100
"""How long a restart waits for readers and writers of other connections; one that
cannot start is tried again once as many more pages have been written."""
_WAL_SWITCH_RETRY_DELAY: Final = 0.005
"""Seconds between tries to switch a file to WAL while another connection holds it."""

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
# A live counter's expiry stays as it is: setting it, even to itself, rewrites its entry
# in the expiry index, one more page for the WAL on every hit.
_HIT_LIVE = (
    "UPDATE entries SET value = value + 1"
    " WHERE kind = :kind AND key = :key AND expires_at > :now RETURNING value"
)
_HIT_NEW = (
    "INSERT INTO entries (kind, key, value, expires_at) VALUES (:kind, :key, 1, :expires)"
    " ON CONFLICT (kind, key) DO UPDATE SET value = 1, expires_at = excluded.expires_at"
    " RETURNING value"
)
_COUNT = "SELECT count(*) FROM entries WHERE kind = :kind AND expires_at > :now"
_PING = "SELECT 1 FROM entries LIMIT 1"
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
        self._synchronous = synchronous.upper()
        self._writes = 0
        self._closed = False
        self._inline: sqlite3.Connection | None = None
        self._inline_allowed = self._synchronous == "NORMAL"
        self._maintenance: asyncio.Task[None] | None = None
        self._maintenance_due = 0
        self._maintenance_now = 0.0
        self._log_open = asyncio.Event()
        self._log_open.set()
        self._failed_restart_at = 0  # WAL pages when a restart last gave up
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._file: int | None = None  # the database file, for flushing it (_flush_file)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyproof-sqlite")
        future = self._executor.submit(self._connect)
        try:
            self._conn = future.result()
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown(wait=False)
            raise Unavailable("store_unavailable", "the SQLite store cannot be opened") from exc

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        check_ttl(ttl)
        return await self._unit(lambda steps: steps.add(kind, key, value, ttl), write=True)

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return await self._unit(lambda steps: steps.get(kind, key), write=False)

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return await self._unit(lambda steps: steps.take(kind, key), write=True)

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        check_ttl(window, "window")
        return await self._unit(lambda steps: steps.hit(kind, key, window), write=True)

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        check_ops(ops)
        writes = any(not isinstance(op, Get) for op in ops)
        return await self._unit(lambda steps: run_steps(steps, ops), write=writes)

    async def count(self, kind: Kind) -> int:
        return await self._unit(lambda steps: steps.count(kind), write=False)

    async def ping(self) -> None:
        await self._unit(lambda steps: steps.conn.execute(_PING).fetchall(), write=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._maintenance is not None:
            await asyncio.gather(self._maintenance, return_exceptions=True)
        try:
            if self._inline is not None:
                self._inline.close()
            await loop.run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error:
            _log.warning("closing the SQLite store failed", exc_info=True)
        finally:
            self._executor.shutdown(wait=False)
            if self._file is not None:  # only now: no connection holds a lock on the file
                os.close(self._file)

    async def _unit(self, work: Callable[[_Steps], _T], *, write: bool) -> _T:
        """Run ``work`` as one transaction, on the loop unless every retry met the lock
        (or ``synchronous=FULL``), once the WAL is not being started over."""
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")
        if not self._log_open.is_set():
            await self._log_open.wait()
        now = self._clock()
        try:
            result = await self._run(work, now, write)
        except sqlite3.Error as exc:
            raise Unavailable("store_unavailable", "the SQLite store failed") from exc
        if write:
            self._writes += 1
            if self._writes % PURGE_EVERY == 0:
                self._schedule_maintenance(now)
        return result

    def _schedule_maintenance(self, now: float) -> None:
        """Purge and checkpoint on the thread, not awaited: the request that happened to
        be the ``PURGE_EVERY``-th write does not wait for the fsync. Triggers that come
        while one runs are counted and run after it, each bounded by ``PURGE_BATCH``."""
        self._maintenance_due += 1
        self._maintenance_now = now
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain_all())

    async def _maintain_all(self) -> None:
        try:
            while self._maintenance_due and not self._closed:
                self._maintenance_due -= 1
                frames = await self._on_thread(self._maintain, self._maintenance_now)
                if frames < self._failed_restart_at:  # started over since
                    self._failed_restart_at = 0
                if frames >= self._failed_restart_at + WAL_RESTART_FRAMES:
                    await self._on_thread(self._flush_file)
                    restarted = await self._restart_log()
                    self._failed_restart_at = 0 if restarted else frames
        finally:
            self._maintenance = None

    async def _restart_log(self) -> bool:
        """Start the WAL over while this store's transactions wait (a few milliseconds):
        with writes arriving back to back it would never find a gap to do so."""
        self._log_open.clear()
        try:
            return await self._on_thread(self._restart_now)
        finally:
            self._log_open.set()

    async def _run(self, work: Callable[[_Steps], _T], now: float, write: bool) -> _T:
        """``work`` on the loop, retried after each of ``BUSY_RETRY_DELAYS``, then on the
        thread (at once with ``synchronous=FULL``)."""
        delays = (*BUSY_RETRY_DELAYS, None) if self._inline_allowed else ()
        for delay in delays:
            try:
                return _transaction(self._inline_conn(), work, now, write, inline=True)
            except _Busy:
                if delay is not None:
                    await asyncio.sleep(delay)
        return await self._on_thread(_transaction, self._conn, work, now, write)

    async def _on_thread(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _inline_conn(self) -> sqlite3.Connection:
        if self._inline is None:
            # No busy wait (a locked file sends the work to the thread) and no automatic
            # checkpoint (its fsync would stall the loop; the thread checkpoints).
            conn = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._inline = conn
        return self._inline

    # Everything below runs on the store's own thread.

    def _connect(self) -> sqlite3.Connection:
        _create_file(self._path)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            mode = _enter_wal(conn, self._busy_timeout_ms / 1000)
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL is required")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            migrate(conn)
            # Kept open until the store closes: closing any descriptor of the file drops
            # every POSIX lock this process holds on it, SQLite's included.
            self._file = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            conn.close()
            raise
        return conn

    def _flush_file(self) -> None:
        """Write the database file's changed pages to disk while writers go on.

        The restart's checkpoint syncs the file while this store's transactions wait;
        under steady writes the passive checkpoints never complete, so no sync has come
        since the last restart, and that wait was the whole flush of every page copied
        meanwhile (on ext4, 15 to 20 ms with some 50,000 entries; 2 to 8 ms after this
        flush). Best effort: the restart's own sync still makes it durable.
        """
        if self._file is None:
            return
        try:
            os.fdatasync(self._file)
        except OSError:
            _log.warning("flushing the SQLite database file failed", exc_info=True)

    def _maintain(self, now: float) -> int:
        """Purge and checkpoint; the pages the WAL holds (0 when unknown).

        Best effort: the writes before it have committed and must not be reported failed.
        """
        try:
            _execute(self._conn, _PURGE, {"now": now, "limit": PURGE_BATCH})
        except sqlite3.Error:
            _log.warning("purging expired SQLite entries failed", exc_info=True)
        return self._checkpoint("PASSIVE")[1]

    def _restart_now(self) -> bool:
        """Whether the log was started over within ``_RESTART_WAIT_MS``."""
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {_RESTART_WAIT_MS}")
            try:
                return self._checkpoint("RESTART")[0]
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        except sqlite3.Error:
            _log.warning("setting the SQLite busy timeout failed", exc_info=True)
            return False

    def _checkpoint(self, mode: str) -> tuple[bool, int]:
        """Whether the checkpoint finished, and the pages the WAL holds (0 if unknown)."""
        try:
            busy, frames, _copied = _execute(self._conn, f"PRAGMA wal_checkpoint({mode})", {})[0]
        except sqlite3.Error:
            _log.warning("checkpointing the SQLite WAL failed", exc_info=True)
            return False, 0
        return not busy, max(0, int(frames))


class _Busy(Exception):
    """The file was locked by another connection; nothing was written."""

    def __init__(self, cause: sqlite3.OperationalError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _transaction(
    conn: sqlite3.Connection,
    work: Callable[[_Steps], _T],
    now: float,
    write: bool,
    *,
    inline: bool = False,
) -> _T:
    """``work`` in one transaction; ``BEGIN IMMEDIATE`` takes the write lock up front."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.OperationalError as exc:
        if inline and _is_busy(exc):
            raise _Busy(exc) from exc
        raise
    try:
        result = work(_Steps(conn, now))
        conn.execute("COMMIT")
    except BaseException as exc:
        _rollback(conn)
        if inline and isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            raise _Busy(exc) from exc
        raise
    return result


def _enter_wal(conn: sqlite3.Connection, wait: float) -> str:
    """Switch ``conn``'s file to WAL; the journal mode it then has.

    Several processes opening one new file at once each hold a read lock while asking
    for the write lock the switch needs; SQLite answers all but one with ``SQLITE_BUSY``
    at once, without its busy handler (that wait could deadlock), so the retry is ours.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_WAL_SWITCH_RETRY_DELAY)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _rollback(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        _log.warning("rolling back a SQLite transaction failed", exc_info=True)


def _execute(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    # fetchall: a RETURNING statement only completes once every row is read.
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


class _Steps:
    """The store's statements at one instant, inside one transaction."""

    __slots__ = ("conn", "now")

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn, self.now = conn, now

    def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        now = self.now
        params = {"kind": kind.value, "key": key, "value": value, "expires": now + ttl, "now": now}
        return bool(_execute(self.conn, _ADD, params))

    def get(self, kind: Kind, key: str) -> bytes | None:
        rows = _execute(self.conn, _GET, {"kind": kind.value, "key": key, "now": self.now})
        return bytes(rows[0][0]) if rows else None

    def take(self, kind: Kind, key: str) -> bytes | None:
        rows = _execute(self.conn, _TAKE, {"kind": kind.value, "key": key, "now": self.now})
        return bytes(rows[0][0]) if rows else None

    def hit(self, kind: Kind, key: str, window: float) -> int:
        """The live counter incremented, else (absent or expired) one started at 1; the
        transaction holds the write lock, so nothing comes between the two statements."""
        now = self.now
        params = {"kind": kind.value, "key": key, "now": now}
        rows = _execute(self.conn, _HIT_LIVE, params)
        if not rows:
            new = {"kind": kind.value, "key": key, "expires": now + window}
            rows = _execute(self.conn, _HIT_NEW, new)
        return int(rows[0][0])

    def count(self, kind: Kind) -> int:
        return int(_execute(self.conn, _COUNT, {"kind": kind.value, "now": self.now})[0][0])


def _create_file(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    # SQLite gives the -wal and -shm files the database file's permissions.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
