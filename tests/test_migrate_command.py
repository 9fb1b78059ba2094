"""``keyproof migrate``: forward migrations of the store's schema, on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from keyproof.server.cli import main
from keyproof.stores._postgres_schema import LATEST_VERSION, MIGRATIONS, migrate
from keyproof.testing import free_port

from postgres_server import with_schema


def run(store: str, data_dir: Path) -> int:
    return main(["migrate", "--store", store, "--data-dir", str(data_dir)])


@pytest.mark.postgres
def test_migrate_creates_the_schema_then_finds_it_up_to_date(
    postgres_url: str, postgres_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    parts = urlsplit(postgres_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    # Trust authentication ignores the password; it must not be printed either way.
    with_password = parts._replace(netloc=f"{parts.username}:hunter2@{host}").geturl()
    store = with_schema(with_password, postgres_schema)
    assert run(store, tmp_path) == 0
    assert run(store, tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f": schema migrated from version 0 to {LATEST_VERSION}")
    assert out[1].endswith(f": schema up to date at version {LATEST_VERSION}")
    assert ":***@" in out[0]
    assert "hunter2" not in "".join(out)


async def _advance(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, schema, (*MIGRATIONS, ("SELECT 1",)))
    finally:
        await conn.close()


@pytest.mark.postgres
def test_migrate_refuses_a_schema_newer_than_this_keyproof(
    postgres_url: str, postgres_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    asyncio.run(_advance(postgres_url, postgres_schema))
    assert run(with_schema(postgres_url, postgres_schema), tmp_path) == 2
    assert "store_schema_too_new" in capsys.readouterr().err


def test_migrate_reports_an_unreachable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    store = f"postgresql://kp:hunter2@127.0.0.1:{free_port()}/keyproof?connect_timeout=0.5"
    assert run(store, tmp_path) == 3  # unreachable: a later run may succeed
    captured = capsys.readouterr()
    assert "store_unavailable" in captured.err
    assert "hunter2" not in captured.out + captured.err


def test_migrate_on_sqlite_has_nothing_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert run(f"sqlite:///{tmp_path}/keyproof.db", tmp_path) == 0
    assert capsys.readouterr().out.strip().endswith("no versioned schema, nothing to migrate")
    assert (tmp_path / "keyproof.db").is_file()
