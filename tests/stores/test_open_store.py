"""Choosing a backend by URL, and refusing URLs that cannot be honoured."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection

import keyproof.stores
from keyproof.errors import ConfigurationError, Unavailable
from keyproof.stores import DEFAULT_REDIS_PREFIX, check_ttl, open_store
from keyproof.stores.base import Kind
from keyproof.stores.memory import MemoryStore
from keyproof.stores.postgres import DEFAULT_SCHEMA, PostgresStore
from keyproof.stores.redis import RedisStore
from keyproof.stores.sqlite import SqliteStore


async def test_memory_url() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.close()


async def test_memory_url_with_a_cap() -> None:
    store = open_store("memory://?max_entries=2")
    await store.add(Kind.CHALLENGE, "a", b"v", 60)
    await store.add(Kind.CHALLENGE, "b", b"v", 60)
    with pytest.raises(Unavailable, match="full"):
        await store.add(Kind.CHALLENGE, "c", b"v", 60)
    await store.close()


async def test_sqlite_url_with_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/keyproof.db")
    assert isinstance(store, SqliteStore)
    await store.add(Kind.CHALLENGE, "n1", b"v", 60)
    await store.close()
    assert (tmp_path / "data" / "keyproof.db").is_file()


async def test_sqlite_url_with_an_absolute_and_escaped_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/my%20data/keyproof.db")
    await store.add(Kind.CHALLENGE, "n1", b"v", 60)
    await store.close()
    with sqlite3.connect(tmp_path / "my data" / "keyproof.db") as conn:
        assert conn.execute("SELECT key FROM entries").fetchall() == [("n1",)]
    conn.close()


@pytest.mark.parametrize(
    ("query", "level"), [("", 1), ("?synchronous=normal", 1), ("?synchronous=FULL", 2)]
)
async def test_sqlite_url_chooses_the_synchronous_level(
    tmp_path: Path, query: str, level: int
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/k.db{query}")
    assert isinstance(store, SqliteStore)
    conn = store._conn
    assert await store._on_thread(lambda: conn.execute("PRAGMA synchronous").fetchone()) == (level,)
    await store.close()


async def test_redis_url_defaults() -> None:
    store = open_store("redis://127.0.0.1:6379/3")
    assert isinstance(store, RedisStore)
    assert store.prefix == DEFAULT_REDIS_PREFIX == "keyproof:"
    pool = store._connections.pool
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.connection_class is Connection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6379, 3)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
    assert kwargs["health_check_interval"] == 15
    assert "prefix" not in kwargs
    await store.close()


async def test_redis_url_options_and_prefix() -> None:
    store = open_store(
        "rediss://user:pw@cache.internal/0?prefix=tenant-a:kp:&socket_timeout=0.5"
        "&max_connections=7&ssl_cert_reqs=required"
    )
    assert isinstance(store, RedisStore)
    assert store.prefix == "tenant-a:kp:"
    pool = store._connections.pool
    assert pool.connection_class is SSLConnection
    assert pool.max_connections == 7
    assert pool.connection_kwargs["socket_timeout"] == 0.5
    assert pool.connection_kwargs["password"] == "pw"
    await store.close()


async def test_postgresql_url_defaults() -> None:
    store = open_store("postgresql://keyproof@db.internal:5432/auth")
    assert isinstance(store, PostgresStore)
    assert store.schema == DEFAULT_SCHEMA == "keyproof"
    assert store._dsn == "postgresql://keyproof@db.internal:5432/auth"
    assert store._max_connections == 10
    assert (store._pool_timeout, store._connect_timeout, store._command_timeout) == (2, 2, 2)
    await store.close()


async def test_postgresql_url_options_stay_out_of_the_driver_dsn() -> None:
    store = open_store(
        "postgres://kp:pw@db.internal/auth?schema=tenant_a&max_connections=4&pool_timeout=0.5"
        "&connect_timeout=1&command_timeout=3&sslmode=verify-full&sslrootcert=/etc/ca.pem"
    )
    assert isinstance(store, PostgresStore)
    assert store.schema == "tenant_a"
    assert store._max_connections == 4
    assert (store._pool_timeout, store._connect_timeout, store._command_timeout) == (0.5, 1, 3)
    assert store._dsn == (
        "postgres://kp:pw@db.internal/auth?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"
    )
    await store.close()


def test_postgresql_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyproof.stores.postgres", None)  # as if not installed
    monkeypatch.delattr(keyproof.stores, "postgres", raising=False)
    with pytest.raises(ConfigurationError, match=r"keyproof\[postgres\]"):
        open_store("postgresql://127.0.0.1/auth")


def test_redis_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hiredis", None)  # as if installed without the extra
    monkeypatch.delitem(sys.modules, "keyproof.stores.redis", raising=False)
    monkeypatch.delitem(sys.modules, "keyproof.stores._redis_connections", raising=False)
    monkeypatch.delattr(keyproof.stores, "redis", raising=False)
    with pytest.raises(ConfigurationError, match=r"keyproof\[redis\]"):
        open_store("redis://127.0.0.1:6379/0")


INVALID = {
    "empty": "",
    "no-scheme": "keyproof.db",
    "unknown-scheme": "mysql://127.0.0.1/keyproof",
    "http": "http://127.0.0.1/",
    "memory-host": "memory://host",
    "memory-path": "memory:///x",
    "memory-unknown-param": "memory://?size=3",
    "memory-zero-cap": "memory://?max_entries=0",
    "memory-bad-cap": "memory://?max_entries=many",
    "memory-negative-cap": "memory://?max_entries=-5",
    "sqlite-no-path": "sqlite://",
    "sqlite-root": "sqlite:///",
    "sqlite-host": "sqlite://host/keyproof.db",
    "sqlite-directory": "sqlite:///data/",
    "sqlite-in-memory": "sqlite:///:memory:",
    "sqlite-nul": "sqlite:///a%00b.db",
    "sqlite-synchronous-off": "sqlite:///k.db?synchronous=off",
    "sqlite-unknown-param": "sqlite:///k.db?mode=ro",
    "sqlite-fragment": "sqlite:///k.db#x",
    "redis-no-host": "redis://",
    "redis-only-port": "redis://:6379/0",
    "redis-port-range": "redis://127.0.0.1:99999/0",
    "redis-port-text": "redis://127.0.0.1:port/0",
    "redis-db-text": "redis://127.0.0.1:6379/cache",
    "redis-db-nested": "redis://127.0.0.1:6379/0/1",
    "redis-empty-prefix": "redis://127.0.0.1/0?prefix=",
    "redis-glob-prefix": "redis://127.0.0.1/0?prefix=a*",
    "redis-space-prefix": "redis://127.0.0.1/0?prefix=a%20b",
    "redis-long-prefix": "redis://127.0.0.1/0?prefix=" + "p" * 101,
    "redis-repeated-prefix": "redis://127.0.0.1/0?prefix=a&prefix=b",
    "redis-negative-timeout": "redis://127.0.0.1/0?socket_timeout=-1",
    "redis-nan-timeout": "redis://127.0.0.1/0?socket_timeout=nan",
    "redis-inf-timeout": "redis://127.0.0.1/0?socket_connect_timeout=inf",
    "redis-zero-connections": "redis://127.0.0.1/0?max_connections=0",
    "redis-tls-option-without-tls": "redis://127.0.0.1/0?ssl_ca_certs=/ca.pem",
    "redis-decode-responses": "redis://127.0.0.1/0?decode_responses=true",
    "redis-unknown-param": "redis://127.0.0.1/0?db=2",
    "redis-malformed-query": "redis://127.0.0.1/0?prefix",
    "rediss-bad-cert-reqs": "rediss://127.0.0.1/0?ssl_cert_reqs=maybe",
    "rediss-empty-ca": "rediss://127.0.0.1/0?ssl_ca_certs=",
    "redis-unix": "unix:///run/redis.sock",
    "postgresql-no-host": "postgresql:///auth",
    "postgresql-no-database": "postgresql://127.0.0.1:5432",
    "postgresql-root-path": "postgresql://127.0.0.1:5432/",
    "postgresql-nested-path": "postgresql://127.0.0.1/auth/x",
    "postgresql-port-range": "postgresql://127.0.0.1:70000/auth",
    "postgresql-fragment": "postgresql://127.0.0.1/auth#x",
    "postgresql-upper-schema": "postgresql://127.0.0.1/auth?schema=Keyproof",
    "postgresql-quote-schema": "postgresql://127.0.0.1/auth?schema=a%22b",
    "postgresql-pg-schema": "postgresql://127.0.0.1/auth?schema=pg_keyproof",
    "postgresql-digit-schema": "postgresql://127.0.0.1/auth?schema=1keyproof",
    "postgresql-long-schema": "postgresql://127.0.0.1/auth?schema=" + "s" * 64,
    "postgresql-empty-schema": "postgresql://127.0.0.1/auth?schema=",
    "postgresql-zero-connections": "postgresql://127.0.0.1/auth?max_connections=0",
    "postgresql-nan-timeout": "postgresql://127.0.0.1/auth?command_timeout=nan",
    "postgresql-zero-timeout": "postgresql://127.0.0.1/auth?pool_timeout=0",
    "postgresql-bad-sslmode": "postgresql://127.0.0.1/auth?sslmode=maybe",
    "postgresql-empty-sslcert": "postgresql://127.0.0.1/auth?sslcert=",
    "postgresql-password-param": "postgresql://127.0.0.1/auth?password=x",
    "postgresql-unknown-param": "postgresql://127.0.0.1/auth?statement_timeout=5",
}


@pytest.mark.parametrize("url", list(INVALID.values()), ids=list(INVALID))
def test_invalid_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert caught.value.code == "invalid_setting"


@pytest.mark.parametrize(
    "url", ["redis://admin:hunter2@127.0.0.1:6379/x", "postgresql://kp:hunter2@127.0.0.1/a/b"]
)
def test_errors_never_echo_the_url(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


@pytest.mark.parametrize("seconds", [0.001, 1, 3600.0])
def test_check_ttl_accepts_positive_finite_durations(seconds: float) -> None:
    check_ttl(seconds)


def test_check_ttl_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^window must be"):
        check_ttl(0, "window")
