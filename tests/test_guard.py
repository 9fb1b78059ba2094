"""keyproof.guard: Starlette's auth contract, RFC 6750 replies, the JWKS cache.

The issuer is a real keyproof app (memory store, key file in a temporary directory)
reached in-process through ``httpx.ASGITransport``; no socket, no mock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyproof.errors import ConfigurationError
from keyproof.guard import KeyproofBackend, on_error, parse_jwks, require_scope
from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet, SigningKey
from keyproof.server.minting import mint_access_token
from keyproof.stores.memory import MemoryStore
from keyproof.tokens import MAX_VERIFY_LEEWAY

from conftest import TEST_POLICY, FrozenClock

ISSUER = "http://127.0.0.1:8000"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"
AUDIENCE = "https://escrow.example"
OTHER_AUDIENCE = "https://shop.example"
SUBJECT = "eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
CLIENT_ID = "escrow-rs"
CLIENT_SECRET = "correct horse battery staple"


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the real app and records their paths."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


@dataclass
class GuardEnv:
    """A keyproof issuer and guarded resource servers that trust it."""

    settings: Settings
    clock: FrozenClock
    issuer: httpx.AsyncClient
    transport: CountingTransport
    store: MemoryStore
    stack: contextlib.AsyncExitStack
    backends: list[KeyproofBackend] = field(default_factory=list)

    @property
    def key_path(self) -> Path:
        return self.settings.data_dir / KEY_FILE_NAME

    def keys(self) -> KeySet:
        return KeySet.load(self.key_path, self.clock)

    def mint(
        self,
        scope: str = "escrow:read escrow:release",
        keys: KeySet | None = None,
        **overrides: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "issuer": ISSUER,
            "subject": SUBJECT,
            "audience": AUDIENCE,
            "scope": scope,
            "client_id": SUBJECT,
            "lifetime": 600,
            "now": int(self.clock()),
        }
        claims.update(overrides)
        return mint_access_token(keys or self.keys(), **claims).token

    def mint_foreign(self, scope: str = "escrow:read") -> str:
        """A well-formed token signed by a key this issuer never published."""
        return self.mint(scope, keys=KeySet([SigningKey.generate(int(self.clock()))], self.clock))

    def rotate(self, publish_for: int) -> KeySet:
        rotated = self.keys().rotated(publish_for=publish_for)
        rotated.save(self.key_path)
        return rotated

    async def guarded(self, **options: Any) -> httpx.AsyncClient:
        backend = KeyproofBackend(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_url=JWKS_URL,
            clock=self.clock,
            http_client=self.issuer,
            **options,
        )
        self.backends.append(backend)
        transport = httpx.ASGITransport(app=guarded_app(backend))
        client = httpx.AsyncClient(transport=transport, base_url="http://rs.test")
        return await self.stack.enter_async_context(client)

    def jwks_fetches(self) -> int:
        return self.transport.paths.count("/.well-known/jwks.json")


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    sub = user.sub if user.is_authenticated else None
    return JSONResponse({"sub": sub, "scopes": sorted(request.auth.scopes)})


@requires("escrow:release")
async def starlette_release(request: Request) -> JSONResponse:
    return JSONResponse({"released_by": request.user.sub})


@require_scope("escrow:release")
async def release(request: Request) -> JSONResponse:
    return JSONResponse({"released_by": request.user.sub, "jti": request.user.claims["jti"]})


@require_scope(["escrow:read", "escrow:release"])
def sync_both(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def guarded_app(backend: KeyproofBackend) -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/starlette-release", starlette_release, methods=["POST"]),
            Route("/release", release, methods=["POST"]),
            Route("/both", sync_both),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)],
    )


def guard_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        store="memory://",
        chains=("eip155:1",),
        audiences=(AUDIENCE, OTHER_AUDIENCE),
        policy=TEST_POLICY,
        introspection_clients={CLIENT_ID: hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()},
    )


@contextlib.asynccontextmanager
async def guard_env(data_dir: Path, clock: FrozenClock) -> AsyncIterator[GuardEnv]:
    """A running issuer (its key file in ``data_dir``) and a factory of guarded apps."""
    settings = guard_settings(data_dir)
    KeySet([SigningKey.generate(int(clock()))], clock).save(data_dir / KEY_FILE_NAME)
    store = MemoryStore(clock=clock)
    app = create_app(settings, store=store, clock=clock)
    transport = CountingTransport(httpx.ASGITransport(app=app))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        issuer = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=ISSUER)
        )
        yield GuardEnv(settings, clock, issuer, transport, store, stack)
    await store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def env(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[GuardEnv]:
    async with guard_env(tmp_path, clock) as running:
        yield running


@pytest.fixture
async def rs(env: GuardEnv) -> httpx.AsyncClient:
    return await env.guarded()


# --- Starlette's own contract ---------------------------------------------------------


async def test_valid_token_makes_starlettes_requires_work(env: GuardEnv, rs: httpx.AsyncClient):
    response = await rs.post("/starlette-release", headers=bearer(env.mint()))
    assert response.status_code == 200
    assert response.json() == {"released_by": SUBJECT}


async def test_starlettes_requires_refuses_missing_scope(env: GuardEnv, rs: httpx.AsyncClient):
    response = await rs.post("/starlette-release", headers=bearer(env.mint("escrow:read")))
    assert response.status_code == 403


async def test_user_carries_sub_claims_and_scopes(env: GuardEnv, rs: httpx.AsyncClient):
    response = await rs.get("/whoami", headers=bearer(env.mint("escrow:read profile:read")))
    assert response.json() == {"sub": SUBJECT, "scopes": ["escrow:read", "profile:read"]}
    released = await rs.post("/release", headers=bearer(env.mint()))
    assert released.json()["jti"]


async def test_no_token_is_anonymous_on_open_routes(rs: httpx.AsyncClient):
    response = await rs.get("/whoami")
    assert response.json() == {"sub": None, "scopes": []}


async def test_other_authorization_schemes_are_not_ours(rs: httpx.AsyncClient):
    response = await rs.get("/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.json() == {"sub": None, "scopes": []}


# --- RFC 6750 replies -----------------------------------------------------------------


async def test_require_scope_answers_insufficient_scope_with_the_scope(
    env: GuardEnv, rs: httpx.AsyncClient
):
    response = await rs.post("/release", headers=bearer(env.mint("escrow:read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="escrow:release"'
    )
    assert response.json()["error"] == "insufficient_scope"


async def test_require_scope_lists_every_required_scope(env: GuardEnv, rs: httpx.AsyncClient):
    refused = await rs.get("/both", headers=bearer(env.mint("escrow:release")))
    assert refused.status_code == 403
    assert 'scope="escrow:read escrow:release"' in refused.headers["www-authenticate"]
    allowed = await rs.get("/both", headers=bearer(env.mint()))
    assert (allowed.status_code, allowed.json()) == (200, {"ok": True})


async def test_require_scope_without_token_is_401_bearer(rs: httpx.AsyncClient):
    response = await rs.post("/release")
    assert response.status_code == 401
    # Both schemes are offered (RFC 6750 §3.1, RFC 9449 §7.1), with no error code.
    assert response.headers["www-authenticate"] == 'Bearer, DPoP algs="ES256 Ed25519 EdDSA"'


async def test_invalid_token_is_401_invalid_token(env: GuardEnv, rs: httpx.AsyncClient):
    token = env.mint()
    response = await rs.get("/whoami", headers=bearer(token[:-4] + "AAAA"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["reason"] == "token_invalid"
    assert token[:-4] not in response.text


@contextlib.contextmanager
def quiet_client_log() -> Iterator[None]:
    """httpx logs each request URL at INFO; here the URL deliberately carries a token."""
    client_log = logging.getLogger("httpx")
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        client_log.setLevel(level)


async def test_token_in_query_string_is_refused(env: GuardEnv, rs: httpx.AsyncClient):
    token = env.mint()
    for headers in ({}, bearer(token)):
        with quiet_client_log():
            response = await rs.get("/whoami", params={"access_token": token}, headers=headers)
        assert response.status_code == 400
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'


async def test_two_authorization_headers_are_refused(env: GuardEnv, rs: httpx.AsyncClient):
    headers = [("Authorization", f"Bearer {env.mint()}"), ("Authorization", "Bearer x")]
    response = await rs.get("/whoami", headers=headers)
    assert response.status_code == 400


async def test_empty_bearer_token_is_refused(rs: httpx.AsyncClient):
    response = await rs.get("/whoami", headers={"Authorization": "Bearer   "})
    assert response.status_code == 400


REFUSALS = {
    "tampered": ("signature or claims invalid", "token_invalid", "invalid token"),
    "other_audience": ("token is for another audience", "token_invalid", "invalid token"),
    "unknown_kid": ("unknown key id", "token_invalid", "invalid token"),
    "expired": ("token expired", "token_expired", "token expired"),
}


def refused_token(env: GuardEnv, case: str) -> str:
    if case == "tampered":
        token = env.mint()
        return token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    if case == "other_audience":
        return env.mint(audience=OTHER_AUDIENCE)
    if case == "unknown_kid":
        return env.mint_foreign("escrow:release")
    return env.mint(now=int(env.clock()) - 700)


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_401_carries_a_fixed_description_and_logs_the_reason(
    env: GuardEnv, rs: httpx.AsyncClient, case: str, caplog: pytest.LogCaptureFixture
):
    detail, reason, public = REFUSALS[case]
    caplog.set_level(logging.DEBUG, logger="keyproof.guard")
    response = await rs.get("/whoami", headers=bearer(refused_token(env, case)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{public}"'
    )
    assert response.json() == {
        "error": "invalid_token",
        "reason": reason,
        "error_description": public,
    }
    logged = [r.getMessage() for r in caplog.records if r.name == "keyproof.guard"]
    assert any(detail in message for message in logged), logged


# --- the JWKS cache -------------------------------------------------------------------


async def test_jwks_is_fetched_once_and_cached(env: GuardEnv, rs: httpx.AsyncClient):
    for _ in range(5):
        assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200
    assert env.jwks_fetches() == 1


async def test_jwks_is_refetched_after_its_max_age(env: GuardEnv, rs: httpx.AsyncClient):
    assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200
    env.clock.advance(301)
    assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200
    assert env.jwks_fetches() == 2


async def test_new_kid_is_fetched_without_restart(env: GuardEnv, rs: httpx.AsyncClient):
    old_token = env.mint()
    assert (await rs.get("/whoami", headers=bearer(old_token))).status_code == 200
    rotated = env.rotate(publish_for=60)
    env.clock.advance(61)
    new_token = env.mint()
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.keys[-1].kid
    assert (await rs.get("/whoami", headers=bearer(new_token))).status_code == 200
    assert (await rs.get("/whoami", headers=bearer(old_token))).status_code == 200
    assert env.jwks_fetches() == 2


async def test_unknown_kid_refreshes_at_most_once_per_cooldown(
    env: GuardEnv, rs: httpx.AsyncClient
):
    assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200
    env.clock.advance(31)
    forged = env.mint_foreign("escrow:release")
    for _ in range(10):
        assert (await rs.get("/whoami", headers=bearer(forged))).status_code == 401
    assert env.jwks_fetches() == 2
    env.clock.advance(30)
    assert (await rs.get("/whoami", headers=bearer(forged))).status_code == 401
    assert env.jwks_fetches() == 3


async def test_jwks_unreachable_fails_closed(env: GuardEnv):
    rs = await env.guarded()
    backend = env.backends[-1]
    backend.jwks.url = f"{ISSUER}/no-such-jwks"
    response = await rs.get("/whoami", headers=bearer(env.mint()))
    assert response.status_code == 503
    assert response.json()["reason"] == "upstream_unavailable"
    assert "www-authenticate" not in response.headers


async def test_failed_refresh_keeps_the_cached_keys(env: GuardEnv, rs: httpx.AsyncClient):
    assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200
    env.backends[-1].jwks.url = f"{ISSUER}/no-such-jwks"
    env.clock.advance(301)
    assert (await rs.get("/whoami", headers=bearer(env.mint()))).status_code == 200


class CountingIssuer(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 that counts JWKS fetches; 503 until it has keys."""

    jwks: dict[str, Any] | None = None
    fetches = 0


class _JWKSHandler(BaseHTTPRequestHandler):
    server: CountingIssuer

    def do_GET(self) -> None:
        self.server.fetches += 1
        document = self.server.jwks
        body = json.dumps(document or {"error": "temporarily_unavailable"}).encode()
        self.send_response(200 if document is not None else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def counting_issuer() -> Iterator[CountingIssuer]:
    server = CountingIssuer(("127.0.0.1", 0), _JWKSHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def backend_of(issuer: CountingIssuer, env: GuardEnv) -> KeyproofBackend:
    """A guard fetching its keys from ``issuer`` over real HTTP."""
    host, port = issuer.server_address[:2]
    return KeyproofBackend(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=f"http://{host!s}:{port}/.well-known/jwks.json",
        clock=env.clock,
    )


async def test_requests_during_the_first_fetch_wait_for_its_keys(env: GuardEnv):
    with counting_issuer() as issuer:
        issuer.jwks = env.keys().jwks()
        backend = backend_of(issuer, env)
        transport = httpx.ASGITransport(app=guarded_app(backend))
        async with httpx.AsyncClient(transport=transport, base_url="http://rs.test") as rs:
            token = env.mint()
            responses = await asyncio.gather(
                *(rs.get("/whoami", headers=bearer(token)) for _ in range(30))
            )
        await backend.aclose()
    assert [r.status_code for r in responses] == [200] * 30
    assert issuer.fetches == 1


async def test_issuer_outage_is_fetched_at_most_once_per_cooldown(env: GuardEnv):
    with counting_issuer() as issuer:
        backend = backend_of(issuer, env)
        transport = httpx.ASGITransport(app=guarded_app(backend))
        async with httpx.AsyncClient(transport=transport, base_url="http://rs.test") as rs:
            token = env.mint()

            async def status() -> int:
                return (await rs.get("/whoami", headers=bearer(token))).status_code

            assert await asyncio.gather(*(status() for _ in range(20))) == [503] * 20
            assert issuer.fetches == 1
            env.clock.advance(29)
            assert [await status() for _ in range(20)] == [503] * 20
            assert issuer.fetches == 1
            env.clock.advance(1)
            assert await status() == 503
            assert issuer.fetches == 2
            issuer.jwks = env.keys().jwks()
            assert await status() == 503
            env.clock.advance(30)
            assert [await status() for _ in range(5)] == [200] * 5
            assert issuer.fetches == 3
        await backend.aclose()


def test_parse_jwks_keeps_only_ed25519_signing_keys():
    good = SigningKey.generate(0).public_jwk()
    document = {
        "keys": [
            good,
            {**good, "kid": "other", "crv": "X25519"},
            {**good, "kid": "rsa", "kty": "RSA"},
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "es", "alg": "ES256"},
            {**good, "kid": "alg-object", "alg": {"name": "Ed25519"}},
            {**good, "kid": "alg-list", "alg": ["Ed25519"]},
            {**good, "kid": "short", "x": good["x"][:-2]},
            {**good, "kid": "padded", "x": good["x"] + "="},
            {**good, "kid": "../../etc/passwd"},
            "not an object",
        ]
    }
    assert list(parse_jwks(document)) == [good["kid"]]
    older = {**good, "kid": "older", "alg": "EdDSA"}  # RFC 9864's deprecated name
    bare = {k: v for k, v in good.items() if k != "alg"} | {"kid": "bare"}
    assert list(parse_jwks({"keys": [good, older, bare]})) == [good["kid"], "older", "bare"]
    for bad in ([], {"keys": "x"}, None):
        with pytest.raises(ValueError, match="JWKS"):
            parse_jwks(bad)


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"jwks_url": "file:///etc/jwks.json"},
        {"jwks_url": "/relative"},
        {"introspect_scopes": {"escrow:release"}},
        {"introspect_scopes": {"escrow:release"}, "introspection_url": f"{ISSUER}/v1/introspect"},
        {"leeway": 3600},
        {"leeway": MAX_VERIFY_LEEWAY + 1},
        {"leeway": -1},
    ],
    ids=[
        "file_url",
        "relative_url",
        "no_introspection_url",
        "no_client",
        "huge_leeway",
        "leeway_over_cap",
        "negative_leeway",
    ],
)
def test_backend_refuses_bad_configuration(options: dict[str, Any]):
    arguments: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": JWKS_URL}
    arguments.update(options)
    with pytest.raises(ConfigurationError):
        KeyproofBackend(**arguments)


PLAIN_HTTP_ELSEWHERE = [
    "http://keyproof.example/.well-known/jwks.json",
    "http://10.0.0.7:8000/.well-known/jwks.json",
    "http://[::2]/.well-known/jwks.json",
    "http://localhost.keyproof.example/.well-known/jwks.json",
    "http://127.0.0.1.nip.io/.well-known/jwks.json",
    "http://[::ffff:7f00:1]/.well-known/jwks.json",
    "http:///.well-known/jwks.json",
]
LOOPBACK_OR_TLS = [
    "http://127.0.0.1:8000/.well-known/jwks.json",
    "http://127.200.3.4/.well-known/jwks.json",
    "http://[::1]:8000/.well-known/jwks.json",
    "http://localhost:8000/.well-known/jwks.json",
    "http://LOCALHOST/.well-known/jwks.json",
    "https://keyproof.example/.well-known/jwks.json",
]


def backend_with(**urls: str) -> KeyproofBackend:
    return KeyproofBackend(
        issuer=ISSUER,
        audience=AUDIENCE,
        http_client=httpx.AsyncClient(),
        introspect_scopes={"escrow:release"},
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=CLIENT_SECRET,
        **{"jwks_url": JWKS_URL, "introspection_url": f"{ISSUER}/v1/introspect", **urls},
    )


@pytest.mark.parametrize("url", PLAIN_HTTP_ELSEWHERE)
@pytest.mark.parametrize("name", ["jwks_url", "introspection_url"])
def test_plain_http_is_refused_unless_loopback(name: str, url: str):
    with pytest.raises(ConfigurationError, match="https") as refused:
        backend_with(**{name: url})
    assert refused.value.code == "invalid_setting"


@pytest.mark.parametrize("url", LOOPBACK_OR_TLS)
@pytest.mark.parametrize("name", ["jwks_url", "introspection_url"])
def test_loopback_http_and_https_are_accepted(name: str, url: str):
    assert backend_with(**{name: url}).issuer == ISSUER


def test_leeway_up_to_the_cap_is_accepted():
    backend = KeyproofBackend(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL, leeway=MAX_VERIFY_LEEWAY
    )
    assert backend.issuer == ISSUER


def test_repr_shows_no_credentials():
    backend = KeyproofBackend(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=JWKS_URL,
        http_client=httpx.AsyncClient(),
        introspect_scopes={"escrow:release"},
        introspection_url=f"{ISSUER}/v1/introspect",
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=CLIENT_SECRET,
    )
    assert CLIENT_SECRET not in repr(backend)
    assert CLIENT_SECRET not in repr(vars(backend))
