"""Key rotation: publish before signing, retire only once no token of the old key can
validate anywhere, old tokens keep validating, running servers and guards pick up new
keys unrestarted. Time is a frozen clock shared by issuer, guard and key commands.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from keyproof.errors import ConfigurationError, TokenInvalid
from keyproof.guard import KeyproofBackend, on_error, require_scope
from keyproof.server.app import create_app
from keyproof.server.cli import DEFAULT_PUBLISH_FOR, keys_command, main
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, RETIRE_AFTER, KeyFile, KeySet, SigningKey
from keyproof.server.minting import mint_access_token
from keyproof.stores.memory import MemoryStore
from keyproof.testing import free_port
from keyproof.tokens import (
    DEFAULT_LEEWAY,
    JWKS_MAX_AGE,
    MAX_TOKEN_LIFETIME,
    MAX_VERIFY_LEEWAY,
    verify_access_token,
)

from conftest import FrozenClock
from wallets import EthWallet


def mint(keys: KeySet, now: int, issuer: str = "http://127.0.0.1:8000") -> str:
    return mint_access_token(
        keys,
        issuer=issuer,
        subject="did:key:z6MkAgent",
        audience=issuer,
        scope="profile:read",
        client_id="did:key:z6MkAgent",
        lifetime=600,
        now=now,
    ).token


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


# --- the key set ----------------------------------------------------------------------


def test_rotated_key_is_published_before_it_signs(clock: FrozenClock):
    keys = KeySet([SigningKey.generate(int(clock()))], clock)
    old = keys.signing_key()
    rotated = keys.rotated(publish_for=JWKS_MAX_AGE)
    new = rotated.keys[-1]
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [old.kid, new.kid]
    assert rotated.pending() == [new]
    clock.advance(JWKS_MAX_AGE - 1)
    assert rotated.signing_key() is not new
    clock.advance(1)
    assert rotated.signing_key() is new
    assert rotated.pending() == []


def test_tokens_of_an_old_published_key_keep_validating(clock: FrozenClock):
    keys = KeySet([SigningKey.generate(int(clock()))], clock)
    old_token = mint(keys, int(clock()))
    rotated = keys.rotated(publish_for=10)
    clock.advance(10)
    new_token = mint(rotated, int(clock()))
    assert kid_of(new_token) != kid_of(old_token)
    for token in (old_token, new_token):
        claims = verify_access_token(
            token,
            keys=rotated.public_keys(),
            issuer="http://127.0.0.1:8000",
            audience="http://127.0.0.1:8000",
            now=int(clock()),
        )
        assert claims["sub"] == "did:key:z6MkAgent"
    with pytest.raises(TokenInvalid):
        verify_access_token(
            new_token,
            keys=keys.public_keys(),
            issuer="http://127.0.0.1:8000",
            audience="http://127.0.0.1:8000",
            now=int(clock()),
        )


# --- the CLI commands (in-process, with a frozen clock) ----------------------------------


@pytest.fixture
def cli_settings(tmp_path: Path, clock: FrozenClock) -> Settings:
    KeySet.load_or_create(tmp_path / KEY_FILE_NAME, clock)  # as `keyproof serve` does
    return Settings(data_dir=tmp_path, store="memory://", token_ttl=600)


def saved(settings: Settings, clock: FrozenClock) -> KeySet:
    return KeySet.load(settings.data_dir / KEY_FILE_NAME, clock)


def test_rotate_waits_for_the_publication_delay(cli_settings: Settings, clock: FrozenClock):
    keys_command(cli_settings, "show", clock=clock)
    first = saved(cli_settings, clock).signing_key().kid
    keys_command(cli_settings, "rotate", publish_for=900, clock=clock)
    keys = saved(cli_settings, clock)
    assert len(keys.keys) == 2
    assert keys.keys[-1].active_from == int(clock()) + 900
    assert keys.signing_key().kid == first


def test_rotate_refuses_a_second_pending_key(cli_settings: Settings, clock: FrozenClock):
    keys_command(cli_settings, "rotate", clock=clock)
    with pytest.raises(ConfigurationError) as refused:
        keys_command(cli_settings, "rotate", clock=clock)
    assert refused.value.code == "key_in_use"
    assert len(saved(cli_settings, clock).keys) == 2


@pytest.mark.parametrize("publish_for", [0, -5, 8 * 24 * 3600])
def test_rotate_refuses_bad_publication_delays(
    cli_settings: Settings, clock: FrozenClock, publish_for: int
):
    with pytest.raises(ConfigurationError):
        keys_command(cli_settings, "rotate", publish_for=publish_for, clock=clock)


def test_retire_bound_covers_every_verifier():
    assert RETIRE_AFTER == MAX_TOKEN_LIFETIME + MAX_VERIFY_LEEWAY
    # Revocation, introspection and /v1/actions/verify verify with DEFAULT_LEEWAY.
    assert DEFAULT_LEEWAY <= MAX_VERIFY_LEEWAY


def test_retire_is_refused_until_the_bound_passed(cli_settings: Settings, clock: FrozenClock):
    keys_command(cli_settings, "rotate", publish_for=JWKS_MAX_AGE, clock=clock)
    old, new = saved(cli_settings, clock).keys
    allowed_at = new.active_from + RETIRE_AFTER
    # token_ttl is 600 in these settings: the bound does not depend on it.
    for moment in (int(clock()), new.active_from, new.active_from + 631, allowed_at - 1):
        clock.now = moment
        with pytest.raises(ConfigurationError) as refused:
            keys_command(cli_settings, "retire", clock=clock)
        assert refused.value.code == "key_in_use"
        assert len(saved(cli_settings, clock).keys) == 2
    clock.now = allowed_at
    keys_command(cli_settings, "retire", clock=clock)
    assert [k.kid for k in saved(cli_settings, clock).keys] == [new.kid]
    assert old.kid not in str(saved(cli_settings, clock).jwks())


def test_retire_refuses_the_only_key(cli_settings: Settings, clock: FrozenClock):
    keys_command(cli_settings, "show", clock=clock)
    clock.advance(10**6)
    with pytest.raises(ConfigurationError, match="only key"):
        keys_command(cli_settings, "retire", clock=clock)


def test_cli_reports_a_refused_retire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    for name in ("KEYPROOF_TOKEN_TTL", "KEYPROOF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    KeySet.load_or_create(tmp_path / KEY_FILE_NAME)
    assert main(["keys", "rotate", "--data-dir", str(tmp_path), "--publish-for", "600"]) == 0
    assert main(["keys", "retire", "--data-dir", str(tmp_path)]) == 2
    assert "key_in_use" in capsys.readouterr().err
    assert len(KeySet.load(tmp_path / KEY_FILE_NAME).keys) == 2


def key_file_with_successor_since(data: Path, seconds: int) -> KeySet:
    """A key file whose second key started signing ``seconds`` ago (wall clock)."""
    now = int(time.time())
    keys = KeySet(
        [
            SigningKey.generate(now - seconds - 10**5),
            SigningKey.generate(now - seconds - 10**4, active_from=now - seconds),
        ]
    )
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys.save(data / KEY_FILE_NAME)
    return keys


@pytest.mark.parametrize(
    "config", [None, "token_ttl = 3600", "token_ttl = 10"], ids=["none", "ttl_1h", "ttl_10s"]
)
def test_cli_retire_waits_for_the_bound_whatever_the_config(tmp_path: Path, config: str | None):
    options: list[str] = []
    if config is not None:
        (tmp_path / "keyproof.toml").write_text(f"[keyproof]\n{config}\n")
        options = ["--config", str(tmp_path / "keyproof.toml")]
    early = tmp_path / "early"
    key_file_with_successor_since(early, 631)
    refused = keys_cli(early, "retire", *options)
    assert refused.returncode == 2
    assert "key_in_use" in refused.stderr
    assert len(KeySet.load(early / KEY_FILE_NAME).keys) == 2
    late = tmp_path / "late"
    keys = key_file_with_successor_since(late, RETIRE_AFTER + 120)
    retired = keys_cli(late, "retire", *options)
    assert retired.returncode == 0, retired.stderr
    assert [k.kid for k in KeySet.load(late / KEY_FILE_NAME).keys] == [keys.keys[1].kid]


def test_rotate_warns_below_the_jwks_max_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("KEYPROOF_CONFIG", raising=False)
    KeySet.load_or_create(tmp_path / KEY_FILE_NAME)
    assert main(["keys", "rotate", "--data-dir", str(tmp_path), "--publish-for", "5"]) == 0
    assert "shorter than the JWKS max-age" in capsys.readouterr().err


# --- a running server reloads the key file -----------------------------------------------


def test_key_file_is_checked_at_most_once_per_interval(tmp_path: Path, clock: FrozenClock):
    path = tmp_path / KEY_FILE_NAME
    watched = KeyFile(path, clock)
    first = watched.current()
    first.rotated(publish_for=1).save(path)
    assert watched.current() is first
    clock.advance(0.5)
    assert watched.current() is first
    clock.advance(0.5)
    assert len(watched.current().keys) == 2


def test_unreadable_key_file_keeps_the_last_good_set(tmp_path: Path, clock: FrozenClock):
    path = tmp_path / KEY_FILE_NAME
    watched = KeyFile(path, clock)
    first = watched.current()
    path.write_text("{not json")
    clock.advance(1)
    assert watched.current() is first


@pytest.fixture
def server_app(tmp_path: Path, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, store="memory://")
    app = create_app(settings, store=MemoryStore(clock=clock), clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def _login(client: TestClient) -> str:
    wallet = EthWallet.create()
    issued = client.post("/v1/challenge", json={"account": wallet.caip10()}).json()
    signature = wallet.sign(issued["message"])
    response = client.post("/v1/token", json={"message": issued["message"], "signature": signature})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_running_server_picks_up_a_rotated_key_file(
    server_app: TestClient, tmp_path: Path, clock: FrozenClock
):
    old_kid = kid_of(_login(server_app))
    settings = Settings(data_dir=tmp_path, store="memory://")
    keys_command(settings, "rotate", publish_for=JWKS_MAX_AGE, clock=clock)
    clock.advance(1)
    jwks = server_app.get("/.well-known/jwks.json")
    assert len(jwks.json()["keys"]) == 2
    assert jwks.headers["cache-control"] == f"public, max-age={JWKS_MAX_AGE}"
    assert kid_of(_login(server_app)) == old_kid
    clock.advance(JWKS_MAX_AGE)
    assert kid_of(_login(server_app)) != old_kid


# --- issuer and guard on one frozen clock ---------------------------------------------


def profile_app(backend: KeyproofBackend) -> Starlette:
    """A resource server guarded by ``backend``; replies with the guard's fetch count."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    @require_scope("profile:read")
    async def profile(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.sub, "jwks_fetches": backend.jwks.fetches})

    return Starlette(
        routes=[Route("/profile", profile)],
        middleware=[Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)],
        lifespan=lifespan,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_in(issued: dict[str, str], wallet: EthWallet) -> dict[str, str]:
    return {"message": issued["message"], "signature": wallet.sign(issued["message"])}


@dataclass
class Rig:
    """A keyproof app and a guarded app in-process (ASGI), sharing a frozen clock."""

    settings: Settings
    clock: FrozenClock
    issuer: httpx.AsyncClient
    rs: httpx.AsyncClient
    backend: KeyproofBackend

    async def login(self) -> str:
        wallet = EthWallet.create()
        request = {"account": wallet.caip10(), "scope": "profile:read"}
        issued = (await self.issuer.post("/v1/challenge", json=request)).json()
        response = await self.issuer.post("/v1/token", json=signed_in(issued, wallet))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def at_guard(self, token: str) -> int:
        return (await self.rs.get("/profile", headers=bearer(token))).status_code

    async def published(self) -> list[str]:
        jwks = (await self.issuer.get("/.well-known/jwks.json")).json()
        return [key["kid"] for key in jwks["keys"]]

    def keys(self) -> KeySet:
        return KeySet.load(self.settings.data_dir / KEY_FILE_NAME, self.clock)


@contextlib.asynccontextmanager
async def rig(data: Path, clock: FrozenClock, *, token_ttl: int, leeway: int) -> AsyncIterator[Rig]:
    settings = Settings(data_dir=data, store="memory://", token_ttl=token_ttl)
    store = MemoryStore(clock=clock)
    app = create_app(settings, store=store, clock=clock)
    issuer_transport = httpx.ASGITransport(app=app)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        issuer = await stack.enter_async_context(
            httpx.AsyncClient(transport=issuer_transport, base_url=settings.uri)
        )
        backend = KeyproofBackend(
            issuer=settings.issuer,
            audience=settings.uri,
            jwks_url=f"{settings.uri}/.well-known/jwks.json",
            leeway=leeway,
            clock=clock,
            http_client=issuer,
        )
        rs_transport = httpx.ASGITransport(app=profile_app(backend))
        rs = await stack.enter_async_context(
            httpx.AsyncClient(transport=rs_transport, base_url="http://rs.test")
        )
        yield Rig(settings, clock, issuer, rs, backend)
    await store.close()


async def test_last_token_of_the_old_key_is_dead_before_retire_is_allowed(
    tmp_path: Path, clock: FrozenClock
):
    """Server on the 1 h lifetime cap, guard on the leeway cap, retire run without config."""
    data = tmp_path / "data"
    without_config = Settings(data_dir=data, store="memory://")
    async with rig(data, clock, token_ttl=MAX_TOKEN_LIFETIME, leeway=MAX_VERIFY_LEEWAY) as env:
        first = await env.login()
        keys_command(without_config, "rotate", clock=clock)
        old, new = env.keys().keys
        clock.now = new.active_from - 0.5
        last = await env.login()
        assert kid_of(last) == kid_of(first) == old.kid
        last_exp = int(jwt.decode(last, options={"verify_signature": False})["exp"])
        assert last_exp == new.active_from - 1 + MAX_TOKEN_LIFETIME

        for moment, guard_status in (
            (new.active_from + 631, 200),
            (last_exp + MAX_VERIFY_LEEWAY - 1, 200),
            (new.active_from + RETIRE_AFTER - 1, 401),
        ):
            clock.now = moment
            assert await env.at_guard(last) == guard_status, moment - new.active_from
            with pytest.raises(ConfigurationError) as refused:
                keys_command(without_config, "retire", clock=clock)
            assert refused.value.code == "key_in_use"

        clock.now = new.active_from + RETIRE_AFTER
        keys_command(without_config, "retire", clock=clock)
        assert [k.kid for k in env.keys().keys] == [new.kid]
        with pytest.raises(TokenInvalid) as expired:
            verify_access_token(
                last,
                keys=KeySet([old, new], clock).public_keys(),
                issuer=env.settings.issuer,
                audience=env.settings.uri,
                now=int(clock()),
                leeway=MAX_VERIFY_LEEWAY,
            )
        assert expired.value.code == "token_expired"
        clock.advance(1)
        assert await env.published() == [new.kid]
        fresh = await env.login()
        assert kid_of(fresh) == new.kid
        assert await env.at_guard(fresh) == 200


# --- end to end over HTTP: issuer and guard under uvicorn, the key CLI ------------------


@contextlib.contextmanager
def serve_in_thread(app: Starlette, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def keys_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyproof", "keys", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def login(url: str) -> str:
    wallet = EthWallet.create()
    request = {"account": wallet.caip10(), "scope": "profile:read"}
    issued = httpx.post(f"{url}/v1/challenge", json=request).json()
    response = httpx.post(f"{url}/v1/token", json=signed_in(issued, wallet))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_rotation_end_to_end_with_defaults(tmp_path: Path):
    """Default publish delay, JWKS max-age and refresh cooldown; no 401 at any step."""
    data = tmp_path / "data"
    # Frozen at the wall clock's reading, so the key CLI (a child process) agrees with it.
    clock = FrozenClock(float(int(time.time())))
    port = free_port()
    settings = Settings(data_dir=data, store="memory://", port=port)
    issuer_app = create_app(settings, store=MemoryStore(clock=clock), clock=clock)
    backend = KeyproofBackend(
        issuer=settings.issuer,
        audience=settings.uri,
        jwks_url=f"{settings.uri}/.well-known/jwks.json",
        clock=clock,
    )
    with serve_in_thread(issuer_app, port) as url, serve_in_thread(profile_app(backend)) as rs:

        def at_guard(token: str) -> tuple[int, int]:
            response = httpx.get(f"{rs}/profile", headers=bearer(token))
            fetches = response.json().get("jwks_fetches", -1) if response.is_success else -1
            return response.status_code, fetches

        def published() -> list[str]:
            return [k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]]

        token_a = login(url)
        assert at_guard(token_a) == (200, 1)

        rotated = keys_cli(data, "rotate")
        assert rotated.returncode == 0, rotated.stderr
        old, new = KeySet.load(data / KEY_FILE_NAME, clock).keys
        assert new.active_from >= int(clock()) + DEFAULT_PUBLISH_FOR
        clock.advance(1)  # the server re-reads its key file at most once a second
        assert published() == [old.kid, new.kid]
        assert kid_of(login(url)) == old.kid
        assert at_guard(token_a) == (200, 1)

        # Still before the new key signs, the guard's cached JWKS passes its max-age.
        clock.now = new.active_from - JWKS_MAX_AGE + 10
        assert at_guard(token_a) == (200, 2)
        clock.now = new.active_from
        token_b = login(url)
        assert kid_of(token_b) == new.kid
        # The guard had the new key before it signed: no restart, no extra fetch.
        assert at_guard(token_b) == (200, 2)

        clock.now = new.active_from + RETIRE_AFTER - 1
        shown = keys_cli(data, "show")
        assert f"oldest key retirable at {new.active_from + RETIRE_AFTER}" in shown.stdout
        with pytest.raises(ConfigurationError):
            keys_command(Settings(data_dir=data, store="memory://"), "retire", clock=clock)
        clock.advance(1)
        keys_command(Settings(data_dir=data, store="memory://"), "retire", clock=clock)
        clock.advance(1)
        assert published() == [new.kid]
        token_c = login(url)
        assert kid_of(token_c) == new.kid
        status, fetches = at_guard(token_c)
        assert (status, fetches) == (200, 3)
        assert at_guard(token_a)[0] == 401
