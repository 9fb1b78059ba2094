"""SQLite specifics: the file, its pragmas, purging, failures and crash durability."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from keyproof.errors import Unavailable
from keyproof.stores import sqlite as sqlite_store
from keyproof.stores.base import Kind
from keyproof.stores.sqlite import BUSY_RETRY_DELAYS, PURGE_BATCH, PURGE_EVERY, SqliteStore

from .harness import START, WORKER, FrozenClock, until, worker_env

CHALLENGE = Kind.CHALLENGE
WAL_FRAME_HEADER = 24  # https://sqlite.org/fileformat.html#wal_file_format


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    conn.close()
    return count


async def until_purged(condition: Callable[[], bool]) -> None:
    """The background purge runs on the store's thread, not awaited by writes."""
    await until(condition, what="the background purge")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
async def store(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.db", clock=clock)
    yield opened
    await opened.close()


async def test_creates_parent_directories_and_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keyproof.db"
    store = SqliteStore(path)
    await store.add(CHALLENGE, "n1", b"v", 60)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    await store.close()


async def test_uses_wal_and_the_documented_schema(store: SqliteStore, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        table_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()
        index = conn.execute(
            "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%expires_at%'"
        ).fetchone()
    conn.close()
    assert "WITHOUT ROWID" in table_sql[0]
    assert index == ("entries",)


async def test_a_hit_on_a_live_counter_writes_one_page(store: SqliteStore, tmp_path: Path) -> None:
    # The counter's row only: its expiry stays, so its entry in the expiry index is
    # not rewritten (a second page in the WAL on every hit).
    await store.hit(Kind.COUNTER, "c", 60)
    wal = tmp_path / "store.db-wal"
    before = wal.stat().st_size
    assert await store.hit(Kind.COUNTER, "c", 60) == 2
    with sqlite3.connect(tmp_path / "store.db") as conn:
        page: int = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert wal.stat().st_size - before == WAL_FRAME_HEADER + page


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
async def test_synchronous_level(tmp_path: Path, synchronous: str, level: int) -> None:
    store = SqliteStore(tmp_path / "store.db", synchronous=synchronous)
    conn = store._conn
    assert await store._on_thread(lambda: conn.execute("PRAGMA synchronous").fetchone()) == (level,)
    await store.close()


def test_rejects_an_unknown_synchronous_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "store.db", synchronous="off")


async def test_entries_survive_reopening(tmp_path: Path, clock: FrozenClock) -> None:
    first = SqliteStore(tmp_path / "store.db", clock=clock)
    await first.add(CHALLENGE, "kept", b"v", 60)
    await first.add(CHALLENGE, "taken", b"v", 60)
    await first.take(CHALLENGE, "taken")
    await first.close()
    second = SqliteStore(tmp_path / "store.db", clock=clock)
    assert await second.get(CHALLENGE, "kept") == b"v"
    assert await second.get(CHALLENGE, "taken") is None
    await second.close()


async def test_two_stores_on_one_file_share_state(tmp_path: Path, clock: FrozenClock) -> None:
    one = SqliteStore(tmp_path / "store.db", clock=clock)
    two = SqliteStore(tmp_path / "store.db", clock=clock)
    assert await one.add(CHALLENGE, "n1", b"v", 60)
    assert await two.add(CHALLENGE, "n1", b"w", 60) is False
    assert await two.take(CHALLENGE, "n1") == b"v"
    assert await one.take(CHALLENGE, "n1") is None
    await one.close()
    await two.close()


async def test_expired_rows_are_purged_in_bounded_batches(
    store: SqliteStore, clock: FrozenClock, tmp_path: Path
) -> None:
    expired = PURGE_BATCH + PURGE_BATCH // 2
    writes = 0
    for i in range(expired):
        await store.add(CHALLENGE, f"old{i}", b"v", 1)
        writes += 1
    await until_purged(lambda: store._maintenance is None)  # runs before expiry purge nothing
    clock.advance(2)
    assert rows(tmp_path / "store.db") == expired
    for _ in range(PURGE_EVERY - writes % PURGE_EVERY):
        await store.take(CHALLENGE, "absent")
    await until_purged(lambda: rows(tmp_path / "store.db") < expired)
    assert rows(tmp_path / "store.db") == expired - PURGE_BATCH
    for _ in range(PURGE_EVERY):
        await store.take(CHALLENGE, "absent")
    await until_purged(lambda: rows(tmp_path / "store.db") == 0)


async def test_writes_do_not_wait_for_the_purge_and_it_catches_up(
    store: SqliteStore, clock: FrozenClock, tmp_path: Path
) -> None:
    for i in range(3 * PURGE_BATCH):
        await store.add(CHALLENGE, f"old{i}", b"v", 1)
    clock.advance(2)
    await until_purged(lambda: store._maintenance is None)
    writes_before = store._writes
    # The store's thread is held: a write that waited for the purge would never return.
    held = threading.Event()
    store._executor.submit(held.wait, 30)
    try:
        for _ in range(3 * PURGE_EVERY - writes_before % PURGE_EVERY):
            await asyncio.wait_for(store.take(CHALLENGE, "absent"), 5)
        assert rows(tmp_path / "store.db") == 3 * PURGE_BATCH
    finally:
        held.set()
    # The first run purges one batch; the two triggers that came meanwhile, one each.
    await until_purged(lambda: rows(tmp_path / "store.db") == 0)


async def test_purge_keeps_live_rows(
    store: SqliteStore, clock: FrozenClock, tmp_path: Path
) -> None:
    await store.add(CHALLENGE, "live", b"v", 3600)
    for i in range(PURGE_EVERY):
        await store.add(CHALLENGE, f"old{i}", b"v", 1)
    clock.advance(2)
    for _ in range(PURGE_EVERY):
        await store.take(CHALLENGE, "absent")
    await until_purged(lambda: rows(tmp_path / "store.db") == 1)
    assert await store.count(CHALLENGE) == 1
    assert await store.get(CHALLENGE, "live") == b"v"


async def steady_writes(store: SqliteStore, path: Path) -> None:
    """The store's writes while another writer keeps the log busy: a passive checkpoint
    alone never sees it idle."""
    stop = threading.Event()

    def other_writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        for i in range(20_000):
            if stop.is_set():
                break
            conn.execute("INSERT INTO entries VALUES ('other', ?, ?, 1e12)", (str(i), b"v" * 300))
            if i % 50 == 49:  # a moment's gap: SQLite's busy wait is not fair to the store
                time.sleep(0.001)
        conn.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        for i in range(8 * PURGE_EVERY):
            await store.add(CHALLENGE, f"n{i}", b"v" * 300, 3600)
            await asyncio.sleep(0.0005)
    finally:
        stop.set()
        writer.join()
    await until_purged(lambda: store._maintenance is None)


async def test_the_wal_starts_over_under_steady_writes(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 64)
    path = tmp_path / "store.db"
    await steady_writes(store, path)
    frame = 4096 + 24  # a page and its WAL frame header
    # Without the restart the log keeps every page written: about 7,000 frames here.
    assert Path(f"{path}-wal").stat().st_size < 3000 * frame


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
async def test_the_database_file_is_flushed_before_the_log_starts_over(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The restart syncs the file while the store's writes wait: the pages copied since
    # the last restart are flushed just before, while they go on, so that wait is short.
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 64)
    path = tmp_path / "store.db"
    events: list[str] = []
    flush, restart = os.fdatasync, SqliteStore._restart_now

    def watched_flush(fd: int) -> None:
        if Path(f"/proc/self/fd/{fd}").resolve() == path.resolve():
            events.append("flush")
        flush(fd)

    def watched_restart(self: SqliteStore) -> bool:
        events.append("restart")
        return restart(self)

    monkeypatch.setattr(os, "fdatasync", watched_flush)
    monkeypatch.setattr(SqliteStore, "_restart_now", watched_restart)
    await steady_writes(store, path)
    assert events.count("restart") >= 1
    assert all(events[i - 1] == "flush" for i, e in enumerate(events) if e == "restart"), events


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
async def test_closing_the_store_releases_every_descriptor_of_its_file(tmp_path: Path) -> None:
    path = (tmp_path / "store.db").resolve()

    def descriptors() -> int:
        return sum(entry.resolve() == path for entry in Path("/proc/self/fd").iterdir())

    store = SqliteStore(path)
    await store.add(CHALLENGE, "n1", b"v", 60)  # both connections open
    assert descriptors() >= 3  # the two connections' and the one kept for flushing
    await store.close()
    assert descriptors() == 0


async def test_a_reader_that_pins_the_wal_stalls_writes_briefly(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader left open (a shell, a backup) keeps the log from starting over: the
    # restart gives up quickly instead of pausing the store for its busy timeout.
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 64)
    reader = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM entries").fetchall()
    slowest = 0.0
    try:
        for i in range(4 * PURGE_EVERY):
            started = time.monotonic()
            await store.add(CHALLENGE, f"n{i}", b"v" * 300, 3600)
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0)
        await until_purged(lambda: store._maintenance is None)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert slowest < 1.0  # the busy timeout is 5 s


async def test_a_write_that_meets_the_lock_is_retried_on_the_loop(
    store: SqliteStore, tmp_path: Path
) -> None:
    await store.add(CHALLENGE, "n1", b"v", 60)
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    # The store's thread is held: a write handed to it would never return.
    held = threading.Event()
    store._executor.submit(held.wait, 30)
    try:
        asyncio.get_running_loop().call_later(BUSY_RETRY_DELAYS[0], blocker.rollback)
        assert await asyncio.wait_for(store.take(CHALLENGE, "n1"), 5) == b"v"
    finally:
        held.set()
        blocker.close()


def test_a_corrupt_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not a database, " * 200)
    path.chmod(0o600)
    with pytest.raises(Unavailable) as caught:
        SqliteStore(path)
    assert caught.value.code == "store_unavailable"
    assert str(tmp_path) not in caught.value.description


def test_a_directory_in_place_of_the_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        SqliteStore(tmp_path)


async def test_a_write_locked_beyond_the_busy_timeout_is_unavailable(
    tmp_path: Path, clock: FrozenClock
) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path, busy_timeout=0.05, clock=clock)
    await store.add(CHALLENGE, "n1", b"v", 60)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Unavailable) as caught:
            await store.take(CHALLENGE, "n1")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert await store.get(CHALLENGE, "n1") == b"v"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await store.take(CHALLENGE, "n1") == b"v"
    await store.close()


TAKEN_BEFORE_KILL = 150
CRASH_LIMIT = 200_000


def test_consumed_entries_stay_consumed_after_sigkill(tmp_path: Path) -> None:
    """Kill a writer mid-loop; whatever it reported as committed must hold on reopen."""
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "crash", str(path), str(CRASH_LIMIT)],
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        taken = 0
        while taken < TAKEN_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line, "the worker stopped before it was killed"
            lines.append(line)
            taken += line.startswith("taken ")
        proc.kill()
        proc.wait(timeout=60)
        lines.extend(proc.stdout.readlines())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -9
    check_after_crash(path, [line for line in lines if line.endswith("\n")])


def check_after_crash(path: Path, lines: list[str]) -> None:
    added = {int(line.split()[1]) for line in lines if line.startswith("added ")}
    taken = {int(line.split()[1]) for line in lines if line.startswith("taken ")}
    last = max(added)
    assert added == set(range(last + 1))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    with sqlite3.connect(path) as conn:
        stored = dict(conn.execute("SELECT key, value FROM entries WHERE kind = 'challenge'"))
    conn.close()
    for i in added:
        if i % 3 != 0:
            assert stored.get(f"k{i}") == f"v{i}".encode(), f"k{i} was lost"
        elif i in taken:
            assert f"k{i}" not in stored, f"k{i} is redeemable again"
        else:
            assert i == last, f"k{i} should have been reported taken"
    assert len(taken) >= TAKEN_BEFORE_KILL
