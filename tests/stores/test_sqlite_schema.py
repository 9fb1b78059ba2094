"""The SQLite store's schema version: recorded, migrated forward on open, never backward."""

from __future__ import annotations

import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keyproof.errors import Unavailable
from keyproof.stores._sqlite_schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from keyproof.stores.base import Kind
from keyproof.stores.sqlite import SqliteStore

from .harness import START, FrozenClock

# The layout of releases that recorded no version, verbatim.
VERSION_LESS_LAYOUT = (
    "CREATE TABLE IF NOT EXISTS entries ("
    " kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL NOT NULL,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at)",
)
ADD_NOTE = ("ALTER TABLE entries ADD COLUMN note TEXT",)


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def private_database(path: Path, *statements: str) -> None:
    """A database file as an earlier release left it (mode 0600)."""
    conn = connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.close()
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def recorded_versions(path: Path) -> list[int]:
    conn = connect(path)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM keyproof_schema ORDER BY 1")]
    finally:
        conn.close()


async def test_a_version_less_database_is_migrated_and_keeps_its_entries(tmp_path: Path):
    path = tmp_path / "keyproof.db"
    private_database(
        path,
        *VERSION_LESS_LAYOUT,
        f"INSERT INTO entries VALUES ('revoked', 'jti-1', x'01', {START + 600})",
    )
    store = SqliteStore(path, clock=FrozenClock(START))
    try:
        assert await store.get(Kind.REVOKED, "jti-1") == b"\x01"
    finally:
        await store.close()
    assert recorded_versions(path) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_new_database_records_the_current_version(tmp_path: Path):
    store = SqliteStore(tmp_path / "new.db")
    await store.close()
    assert recorded_versions(tmp_path / "new.db") == list(range(1, SCHEMA_VERSION + 1))


def test_later_migrations_run_in_order_once(tmp_path: Path):
    path = tmp_path / "keyproof.db"
    conn = connect(path)
    assert migrate(conn) == 0
    assert migrate(conn, (*MIGRATIONS, ADD_NOTE)) == SCHEMA_VERSION
    assert migrate(conn, (*MIGRATIONS, ADD_NOTE)) == SCHEMA_VERSION + 1  # nothing left to do
    columns = [row[1] for row in conn.execute("PRAGMA table_info(entries)")]
    conn.close()
    assert columns[-1] == "note"
    assert recorded_versions(path) == list(range(1, SCHEMA_VERSION + 2))


def test_a_failed_migration_changes_nothing(tmp_path: Path):
    path = tmp_path / "keyproof.db"
    conn = connect(path)
    migrate(conn)
    broken = (*MIGRATIONS, (*ADD_NOTE, "ALTER TABLE no_such_table ADD COLUMN x TEXT"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(entries)")]
    assert "note" not in columns
    assert schema_version(conn) == SCHEMA_VERSION
    conn.close()


def test_a_database_of_a_newer_release_is_refused(tmp_path: Path):
    path = tmp_path / "keyproof.db"
    conn = connect(path)
    migrate(conn, (*MIGRATIONS, ADD_NOTE))
    conn.close()
    path.chmod(0o600)
    with pytest.raises(Unavailable) as refused:
        SqliteStore(path)
    assert isinstance(refused.value.__cause__, sqlite3.DatabaseError)
    assert "written by a newer release" in str(refused.value.__cause__)
    assert recorded_versions(path) == list(range(1, SCHEMA_VERSION + 2))


async def test_processes_opening_one_new_file_at_once_migrate_it_once(tmp_path: Path):
    # Several rounds: the race for the switch to WAL is lost only now and then.
    for round_ in range(10):
        path = tmp_path / f"keyproof-{round_}.db"
        with ThreadPoolExecutor(max_workers=6) as pool:
            stores = list(pool.map(SqliteStore, [path] * 6))
        for store in stores:
            await store.close()
        assert recorded_versions(path) == list(range(1, SCHEMA_VERSION + 1))
