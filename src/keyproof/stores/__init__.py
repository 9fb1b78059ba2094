"""Store backends, chosen by URL and imported lazily (specs/protocol.md §8).

========================================  =============================================
URL                                       backend
========================================  =============================================
``memory://`` (``?max_entries=N``)        :class:`~keyproof.stores.memory.MemoryStore`
``sqlite:///relative/path.db``            :class:`~keyproof.stores.sqlite.SqliteStore`
``sqlite:////absolute/path.db``           (``?synchronous=normal|full``)
``redis://host:port/db``, ``rediss://``   :class:`~keyproof.stores.redis.RedisStore`
                                          (``?prefix=keyproof:`` and a few client options)
``postgresql://user@host:port/db``        :class:`~keyproof.stores.postgres.PostgresStore`
(or ``postgres://``)                      (``?schema=keyproof``, pool and TLS options)
========================================  =============================================

Only the backend a URL names is imported, so ``redis`` and ``asyncpg`` stay optional
for deployments that never use them. A URL that cannot be honoured raises
``ConfigurationError("invalid_setting")`` at startup; messages never echo the URL
because it may carry a password.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from keyproof._time import Clock
from keyproof.errors import ConfigurationError
from keyproof.stores.base import Kind, Store

__all__ = ["DEFAULT_REDIS_PREFIX", "Kind", "Store", "check_ttl", "open_store"]

DEFAULT_REDIS_PREFIX = "keyproof:"

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")
_DB_RE = re.compile(r"/?|/[0-9]{1,5}")
_REDIS_FLOAT_OPTIONS = frozenset({"socket_timeout", "socket_connect_timeout"})
_REDIS_INT_OPTIONS = frozenset({"health_check_interval", "max_connections"})
_REDIS_TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"})
_TLS_CERT_REQS = frozenset({"none", "optional", "required"})
_PG_FLOAT_OPTIONS = frozenset({"pool_timeout", "connect_timeout", "command_timeout"})
_PG_TLS_OPTIONS = frozenset({"sslrootcert", "sslcert", "sslkey"})
_PG_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_PG_DATABASE_RE = re.compile(r"/[^/?#]{1,63}")


def check_ttl(seconds: float, name: str = "ttl") -> None:
    """Reject a non-positive or non-finite duration.

    TTLs and windows come from keyproof's own configuration, never from a client, so a
    bad one is a programming error: ``ValueError``, not a ``KeyproofError``.
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {seconds!r}")


def open_store(url: str, *, clock: Clock = time.time) -> Store:
    """Build the store a URL names; raise ``ConfigurationError`` if it is invalid.

    ``clock`` is the time of entries in the memory and SQLite stores; Redis keeps its own.
    """
    parts = urlsplit(url)
    openers: dict[str, Callable[[str, Clock], Store]] = {
        "memory": _open_memory,
        "sqlite": _open_sqlite,
        "redis": _open_redis,
        "rediss": _open_redis,
        "postgresql": _open_postgres,
        "postgres": _open_postgres,
    }
    opener = openers.get(parts.scheme)
    if opener is None:
        raise _invalid("store URL scheme must be one of memory, sqlite, redis, rediss, postgresql")
    return opener(url, clock)


def _invalid(description: str) -> ConfigurationError:
    return ConfigurationError("invalid_setting", description)


def _query(query: str, allowed: frozenset[str]) -> dict[str, str]:
    """Parse a query string where each allowed name may appear at most once."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _invalid("store URL has a malformed query string") from None
    unknown = sorted(set(parsed) - allowed)
    if unknown:
        raise _invalid(f"store URL has unsupported parameters: {', '.join(unknown)}")
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise _invalid(f"store URL repeats parameters: {', '.join(repeated)}")
    return {name: values[0] for name, values in parsed.items()}


def _positive_int(name: str, text: str, *, zero_ok: bool = False) -> int:
    if not text.isdigit() or (int(text) == 0 and not zero_ok):
        raise _invalid(f"store URL parameter {name} must be a positive integer")
    return int(text)


def _positive_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise _invalid(f"store URL parameter {name} must be a positive number")
    return value


def _open_memory(url: str, clock: Clock) -> Store:
    parts = urlsplit(url)
    if parts.netloc or parts.path or parts.fragment:
        raise _invalid("memory store URL takes no host or path: use memory://")
    options = _query(parts.query, frozenset({"max_entries"}))
    from keyproof.stores.memory import DEFAULT_MAX_ENTRIES, MemoryStore

    raw = options.get("max_entries")
    max_entries = DEFAULT_MAX_ENTRIES if raw is None else _positive_int("max_entries", raw)
    return MemoryStore(max_entries=max_entries, clock=clock)


def _open_sqlite(url: str, clock: Clock) -> Store:
    parts = urlsplit(url)
    if parts.netloc or parts.fragment:
        raise _invalid("sqlite store URL takes no host: use sqlite:///relative or sqlite:////abs")
    path = unquote(parts.path)[1:]  # one "/" separates the empty authority from the path
    if not path or path.endswith("/") or path == ":memory:" or "\x00" in path:
        raise _invalid("sqlite store URL needs a database file path, e.g. sqlite:///keyproof.db")
    options = _query(parts.query, frozenset({"synchronous"}))
    synchronous = options.get("synchronous", "normal").lower()
    if synchronous not in {"normal", "full"}:
        raise _invalid("sqlite store URL parameter synchronous must be normal or full")
    from keyproof.stores.sqlite import SqliteStore

    return SqliteStore(path, synchronous=synchronous, clock=clock)


def _open_redis(url: str, clock: Clock) -> Store:
    parts = urlsplit(url)
    _check_redis_location(url)
    allowed = {"prefix"} | _REDIS_FLOAT_OPTIONS | _REDIS_INT_OPTIONS
    if parts.scheme == "rediss":
        allowed |= _REDIS_TLS_OPTIONS
    options = _query(parts.query, frozenset(allowed))
    prefix = options.pop("prefix", DEFAULT_REDIS_PREFIX)
    if not _PREFIX_RE.fullmatch(prefix):
        raise _invalid("redis prefix must be 1-100 characters from A-Z a-z 0-9 _ . : / -")
    _check_redis_options(options)
    client_url = urlunsplit(parts._replace(query=urlencode(options), fragment=""))
    try:
        from keyproof.stores.redis import RedisStore
    except ImportError:
        raise _invalid("the redis store needs pip install 'keyproof[redis]'") from None

    return RedisStore(client_url, prefix=prefix)


def _check_redis_location(url: str) -> None:
    parts = urlsplit(url)
    _check_port(url, "redis")
    if not parts.hostname:
        raise _invalid("redis store URL needs a host, e.g. redis://127.0.0.1:6379/0")
    if parts.fragment or not _DB_RE.fullmatch(parts.path):
        raise _invalid("redis store URL path must be a database number, e.g. /0")


def _check_redis_options(options: dict[str, str]) -> None:
    for name, value in options.items():
        if name in _REDIS_FLOAT_OPTIONS:
            _positive_float(name, value)
        elif name in _REDIS_INT_OPTIONS:
            _positive_int(name, value, zero_ok=name == "health_check_interval")
        elif name == "ssl_cert_reqs" and value not in _TLS_CERT_REQS:
            raise _invalid("redis store URL parameter ssl_cert_reqs must be none/optional/required")
        elif not value:
            raise _invalid(f"store URL parameter {name} is empty")


def _open_postgres(url: str, clock: Clock) -> Store:
    """``postgresql://user[:password]@host[:port]/database``; the database owns the clock."""
    parts = urlsplit(url)
    _check_port(url, "postgresql")
    if not parts.hostname or parts.fragment or not _PG_DATABASE_RE.fullmatch(parts.path):
        raise _invalid(
            "postgresql store URL needs a host and a database, "
            "e.g. postgresql://keyproof@db.internal:5432/keyproof"
        )
    allowed = {"schema", "max_connections", "sslmode"} | _PG_FLOAT_OPTIONS | _PG_TLS_OPTIONS
    options = _query(parts.query, frozenset(allowed))
    try:
        from keyproof.stores import _postgres_schema, postgres
    except ImportError:
        raise _invalid("the postgresql store needs pip install 'keyproof[postgres]'") from None
    schema = options.pop("schema", postgres.DEFAULT_SCHEMA)
    if not _postgres_schema.SCHEMA_PATTERN.fullmatch(schema):
        raise _invalid("postgresql schema must be 1-63 of a-z 0-9 _, not starting with pg_")
    seconds = {
        name: postgres.DEFAULT_TIMEOUT if raw is None else _positive_float(name, raw)
        for name, raw in ((name, options.pop(name, None)) for name in _PG_FLOAT_OPTIONS)
    }
    size = options.pop("max_connections", None)
    max_connections = (
        postgres.DEFAULT_MAX_CONNECTIONS if size is None else _positive_int("max_connections", size)
    )
    if options.get("sslmode", "prefer") not in _PG_SSLMODES:
        raise _invalid("postgresql store URL parameter sslmode is not a libpq sslmode")
    if not all(options.values()):
        raise _invalid("postgresql store URL has an empty parameter")
    return postgres.PostgresStore(
        urlunsplit(parts._replace(query=urlencode(options), fragment="")),
        schema=schema,
        max_connections=max_connections,
        pool_timeout=seconds["pool_timeout"],
        connect_timeout=seconds["connect_timeout"],
        command_timeout=seconds["command_timeout"],
    )


def _check_port(url: str, backend: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 -- the property raises ValueError when out of range
    except ValueError:
        raise _invalid(f"{backend} store URL has an invalid port") from None
