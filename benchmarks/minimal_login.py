"""A minimal login app: the floor of a did:key sign-in on Starlette and the same store.

What a developer would write by hand with no library, doing only the work a login
cannot skip, so that the HTTP login case can say what keyproof's extra work costs:

- ``POST /v1/challenge`` ``{"account": "did:key:z6Mk..."}``: a random nonce stored
  (nonce -> account, 300 s), a sign-in text with the account on its second line;
  201 ``{"nonce", "message"}``.
- ``POST /v1/token`` ``{"message", "signature"}``: the nonce found by one regex, the
  account read from line 2, the did:key decoded, the ed25519 signature verified (401
  when it does not), the nonce consumed atomically and refused (401) when missing or
  bound to another account, a compact JWS signed by hand; 200 ``{"access_token", ...}``.

The store is ``KEYPROOF_BENCH_STORE``, a URL of the shapes ``servers.store_url`` makes:

- ``sqlite:///path``: one ``sqlite3`` connection per worker, WAL, ``synchronous=NORMAL``
  (keyproof's default durability), a ``WITHOUT ROWID`` table, one autocommit statement
  per request run inline in the handler;
- ``redis://host:port/db?prefix=...``: ``redis.asyncio``, ``SET NX EX`` and ``GETDEL``.

There is no PostgreSQL variant: the PostgreSQL login rows have no such side.

Compared with keyproof it leaves out: rate limits and failure counters, the audit
log, the access log, metrics, the strict message parser and the binding checks
(domain, URI, chain, scopes, audience; the text is only searched for its nonce and its
second line), the time window (Issued At / Expiration Time are written, never read),
replay tombstones (a consumed nonce is simply gone), the scope policy, DPoP and
refresh sessions, request size and time limits, the sweep of expired rows, and a
signing key shared by several workers (each worker generates its own). It is the
floor of a login on this framework and store, not a competitor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from keyproof.crypto.didkey import decode_did_key
from keyproof.errors import KeyproofError

ISSUER = "http://127.0.0.1"
CHALLENGE_TTL, TOKEN_TTL, SCOPE = 300, 600, "profile:read"
ACCOUNT = re.compile(r"did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{40,50}")
NONCE = re.compile(r"^Nonce: ([0-9a-f]{32})$", re.MULTILINE)
MESSAGE = """127.0.0.1 wants you to sign in with your key:
{account}

Sign in with your key.

URI: http://127.0.0.1/login
Version: 1
Nonce: {nonce}
Issued At: {issued_at}
Expiration Time: {expires_at}"""


class Nonces(Protocol):
    async def put(self, nonce: str, account: str) -> bool: ...
    async def take(self, nonce: str) -> str | None: ...
    async def close(self) -> None: ...


class SqliteNonces:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, account TEXT NOT NULL,"
            " expires_at REAL NOT NULL) WITHOUT ROWID"
        )

    async def put(self, nonce: str, account: str) -> bool:
        insert = "INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)"
        return self.db.execute(insert, (nonce, account, time.time() + CHALLENGE_TTL)).rowcount == 1

    async def take(self, nonce: str) -> str | None:
        delete = "DELETE FROM nonces WHERE nonce = ? AND expires_at > ? RETURNING account"
        rows = self.db.execute(delete, (nonce, time.time())).fetchall()
        return str(rows[0][0]) if rows else None

    async def close(self) -> None:
        self.db.close()


class RedisNonces:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.prefix = parse_qs(parts.query).get("prefix", [""])[0]
        self.client = aioredis.Redis.from_url(
            parts._replace(query="").geturl(), decode_responses=True
        )

    async def put(self, nonce: str, account: str) -> bool:
        return bool(await self.client.set(self.prefix + nonce, account, ex=CHALLENGE_TTL, nx=True))

    async def take(self, nonce: str) -> str | None:
        value = await self.client.getdel(self.prefix + nonce)
        return None if value is None else str(value)

    async def close(self) -> None:
        await self.client.aclose()


def open_store(url: str) -> Nonces:
    if url.startswith("sqlite:///"):
        return SqliteNonces(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisNonces(url)
    raise ValueError(f"unsupported store URL: {url.split(':', 1)[0]}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def error(status: int, detail: str) -> Response:
    return JSONResponse({"error": detail}, status_code=status)


class MinimalLogin:
    store: Nonces  # opened at startup

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        x = b64(bytes(self.key.verify_key))
        kid = b64(hashlib.sha256(compact({"crv": "Ed25519", "kty": "OKP", "x": x})).digest())
        self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "Ed25519"}
        self.header = b64(compact({"alg": "Ed25519", "typ": "at+jwt", "kid": kid}))

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.store = open_store(os.environ["KEYPROOF_BENCH_STORE"])
        try:
            yield
        finally:
            await self.store.close()

    async def challenge(self, request: Request) -> Response:
        try:
            account = (await request.json())["account"]
        except (ValueError, KeyError, TypeError):
            return error(400, "malformed request")
        if not isinstance(account, str) or ACCOUNT.fullmatch(account) is None:
            return error(400, "not an ed25519 did:key")  # it becomes a line of the text
        nonce, now = secrets.token_hex(16), int(time.time())
        if not await self.store.put(nonce, account):
            return error(503, "nonce collision")
        message = MESSAGE.format(
            account=account,
            nonce=nonce,
            issued_at=_rfc3339(now),
            expires_at=_rfc3339(now + CHALLENGE_TTL),
        )
        return JSONResponse({"nonce": nonce, "message": message}, status_code=201)

    async def token(self, request: Request) -> Response:
        try:
            body = await request.json()
            message, signature = body["message"], body["signature"]
            nonce = NONCE.search(message)
            account = message.split("\n", 2)[1]
            kind, public_key = decode_did_key(account)
            raw_signature = base64.urlsafe_b64decode(signature + "==")
        except (ValueError, KeyError, TypeError, IndexError, KeyproofError):
            return error(400, "malformed request")
        if nonce is None or kind != "ed25519":
            return error(400, "malformed message")
        try:
            VerifyKey(public_key).verify(message.encode(), raw_signature)
        except (BadSignatureError, ValueError):
            return error(401, "bad signature")
        if await self.store.take(nonce.group(1)) != account:
            return error(401, "unknown, expired or used challenge")
        return JSONResponse(
            {"access_token": self.mint(account), "token_type": "Bearer", "expires_in": TOKEN_TTL}
        )

    def mint(self, subject: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": ISSUER,
            "iat": now,
            "exp": now + TOKEN_TTL,
            "jti": secrets.token_urlsafe(16),
            "scope": SCOPE,
        }
        signing_input = f"{self.header}.{b64(compact(claims))}"
        return f"{signing_input}.{b64(self.key.sign(signing_input.encode()).signature)}"

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.jwk]})


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


login = MinimalLogin()
app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/v1/challenge", login.challenge, methods=["POST"]),
        Route("/v1/token", login.token, methods=["POST"]),
        Route("/.well-known/jwks.json", login.jwks),
    ],
    lifespan=login.lifespan,
)
