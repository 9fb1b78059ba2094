"""The SQLite store's layout, versioned in the database itself, and its forward migrations.

``MIGRATIONS[n - 1]`` brings a database from version ``n - 1`` to ``n``. Opening a store
runs, in one ``BEGIN IMMEDIATE`` transaction, every migration the database has not had,
and records each in the ``keyproof_schema`` table; several processes opening one file
at once migrate it once. A database of a higher version than this release knows was
written by a newer keyproof and is refused rather than misread.

Databases written before versions were recorded have the version-1 layout without the
table: migration 1 creates only what is missing, so for them it records the version.
A later release appends a migration here; it never edits one already released.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: every kind of entry in one table, with its expiry
        "CREATE TABLE IF NOT EXISTS entries ("
        " kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL NOT NULL,"
        " PRIMARY KEY (kind, key)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS keyproof_schema"
    " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration recorded; 0 for an empty or version-less database."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keyproof_schema'"
    ).fetchone()
    if found is None:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM keyproof_schema").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Apply the migrations ``conn``'s database lacks; return the version it had before.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = schema_version(conn)
        if before > len(migrations):
            raise sqlite3.DatabaseError(
                f"the database has schema version {before} and this keyproof knows up to "
                f"{len(migrations)}: it was written by a newer release"
            )
        conn.execute(_VERSION_TABLE)
        for version in range(before + 1, len(migrations) + 1):
            for statement in migrations[version - 1]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO keyproof_schema (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return before
