"""Shared fixtures: settings, services, signing wallets, and log hygiene."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jwt.algorithms import OKPAlgorithm

from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.server.policy import Policy
from keyproof.server.service import Service
from keyproof.stores.memory import MemoryStore
from keyproof.testing import FrozenClock

# --- clock and service ----------------------------------------------------------------

START = 1_800_000_000  # 2027-01-15T08:00:00Z
TEST_POLICY = Policy(
    scopes=frozenset({"profile:read", "escrow:read", "escrow:release", "admin:all"}),
    default=frozenset({"profile:read", "escrow:read"}),
    namespaces={"eip155": frozenset({"escrow:release"})},
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        store="memory://",
        chains=("eip155:1", "eip155:137"),
        policy=TEST_POLICY,
    )


@pytest.fixture
def keyset(clock: FrozenClock) -> KeySet:
    return KeySet([SigningKey.generate(int(clock()))], clock)


@pytest.fixture
async def service(settings: Settings, keyset: KeySet, clock: FrozenClock) -> AsyncIterator[Service]:
    store = MemoryStore(clock=clock)
    yield build_service(settings, store, keyset, clock)
    await store.close()


# --- PyJWT as a third-party verifier ----------------------------------------------------


def pyjwt_claims(token: str, jwks_uri: str, *, audience: str, issuer: str) -> dict[str, Any]:
    """Verify a keyproof token with PyJWT alone, as the README tells its users to.

    PyJWT knows RFC 9864's ``Ed25519`` only once registered, and its ``PyJWKClient``
    skips JWKS keys whose ``alg`` it does not know: the key is read with
    ``OKPAlgorithm.from_jwk``.
    """
    with contextlib.suppress(ValueError):  # registered once per process
        jwt.register_algorithm("Ed25519", OKPAlgorithm())
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in httpx.get(jwks_uri).json()["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        OKPAlgorithm.from_jwk(jwk),
        algorithms=["Ed25519"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "sub", "jti"]},
    )
    return claims


# --- log hygiene: nothing secret may ever be logged -------------------------------------


def _whole(alphabet: str, lengths: str, border: str = "A-Za-z0-9") -> re.Pattern[str]:
    """A run of exactly ``lengths`` characters of ``alphabet`` with a digit and a capital.

    Random 64-byte encodings hold both with overwhelming probability; words and
    lower-case identifiers of that length do not.
    """
    run = f"[{alphabet}]"
    return re.compile(
        rf"(?<![{border}])(?={run}*[0-9])(?={run}*[A-Z]){run}{{{lengths}}}(?![{border}])"
    )


SECRET_PATTERNS = (
    re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{20,}"),  # a JWT
    re.compile(r"0x[0-9a-fA-F]{128,132}\b"),  # an EIP-191 signature
    _whole("1-9A-HJ-NP-Za-km-z", "86,88"),  # a 64-byte signature in base58 (Solana)
    _whole("A-Za-z0-9_-", "86", "A-Za-z0-9_-"),  # a 64-byte signature in base64url
    _whole("A-Za-z0-9+/", "86", "A-Za-z0-9+/"),  # ... in base64 (then "==")
    re.compile(r"0x[0-9a-fA-F]{64}(?![0-9a-fA-F])"),  # a secp256k1 private key
    # A 32-byte seed or key in hex next to a name that says what it is.
    re.compile(
        r"(?i)(?:seed|secret|priv(?:ate)?[_ -]?key|private)[\"']?\s*[:=]\s*[\"']?"
        r"(?:0x)?[0-9a-f]{64}(?![0-9a-f])"
    ),
    re.compile(r"""["']d["']\s*:\s*["'][\w-]{40,}"""),  # a JWK private member, JSON or repr
)
SERVER_LOGS: list[Path] = []
_records: list[str] = []


class _CollectingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _records.append(self.format(record))


def pytest_configure(config: pytest.Config) -> None:
    # DEBUG records are where a careless value would show up first.
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(_CollectingHandler(level=logging.DEBUG))


def secrets_in(text: str) -> list[str]:
    return [m.group(0)[:24] + "…" for p in SECRET_PATTERNS for m in p.finditer(text)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    texts = list(_records) + [p.read_text(errors="replace") for p in SERVER_LOGS if p.exists()]
    leaked = [s for text in texts for s in secrets_in(text)]
    if leaked:
        print(f"\nSECRETS FOUND IN LOGS: {leaked[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def server_log() -> Iterator[list[Path]]:
    """Register server log files for the end-of-session secret scan."""
    yield SERVER_LOGS


# === Redis ==============================================================================
# Fixtures for tests marked @pytest.mark.redis; they talk to a live server at
# KEYPROOF_REDIS_URL (default redis://127.0.0.1:6379/15). Unreachable -> the tests skip,
# or fail when KEYPROOF_REQUIRE_REDIS=1 (CI). Every test gets its own key prefix and
# its keys are deleted afterwards.

import os  # noqa: E402
import uuid  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import redis  # noqa: E402

from keyproof.stores.redis import RedisStore  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test server's URL; skips (or fails, if required) when it does not answer."""
    url = os.environ.get("KEYPROOF_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        message = (
            f"Redis not reachable at {_redacted(url)} ({type(exc).__name__}); "
            "set KEYPROOF_REDIS_URL or start redis-server"
        )
        if os.environ.get("KEYPROOF_REQUIRE_REDIS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client for inspecting keys (PTTL, raw values)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix unique to the test; its keys are deleted afterwards."""
    prefix = f"keyproof-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


# === end of Redis =======================================================================


# === PostgreSQL =========================================================================
# The machine's server at KEYPROOF_POSTGRES_URL (default postgresql://postgres@127.0.0.1:
# 5432/test) for the contract suite and the replicas; unreachable -> the tests skip, or
# fail when KEYPROOF_REQUIRE_POSTGRES=1 (CI). Every test gets its own schema, dropped
# afterwards. Fault tests start a server of their own (postgres_server.OwnPostgres).

from keyproof.stores.postgres import PostgresStore  # noqa: E402

from postgres_server import (  # noqa: E402
    OwnPostgres,
    drop_schema,
    postgres_unreachable,
    require_or_skip,
)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL; skips (or fails, if required) when it does not answer."""
    url = os.environ.get("KEYPROOF_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    problem = postgres_unreachable(url)
    if problem:
        require_or_skip(
            f"PostgreSQL not reachable at {_redacted(url)} ({problem}); "
            "set KEYPROOF_POSTGRES_URL or start PostgreSQL"
        )
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name unique to the test; the schema is dropped afterwards."""
    schema = f"keyproof_test_{uuid.uuid4().hex[:16]}"
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture
async def postgres_store(postgres_url: str, postgres_schema: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_url, schema=postgres_schema)
    yield store
    await store.close()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A private PostgreSQL server on a free port that a test may crash and restart."""
    server = OwnPostgres.create()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


# === end of PostgreSQL ==================================================================
