"""Key rotation: publish before signing, retire only after the longest token lifetime,
old tokens keep validating, running servers and guards pick up new keys unrestarted.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
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

from keyproof.app import create_app
from keyproof.cli import keys_command, longest_token_lifetime, main
from keyproof.config import Settings
from keyproof.errors import ConfigurationError, TokenInvalid
from keyproof.guard import KeyproofBackend, on_error, require_scope
from keyproof.keys import JWKS_MAX_AGE, KEY_FILE_NAME, KeyFile, KeySet, SigningKey
from keyproof.stores.memory import MemoryStore
from keyproof.testing import KeyproofServer, free_port
from keyproof.tokens import mint_access_token, verify_access_token

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
def cli_settings(tmp_path: Path) -> Settings:
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


def test_retire_is_refused_until_the_longest_token_lifetime_passed(
    cli_settings: Settings, clock: FrozenClock
):
    keys_command(cli_settings, "rotate", publish_for=JWKS_MAX_AGE, clock=clock)
    old, new = saved(cli_settings, clock).keys
    allowed_at = new.active_from + longest_token_lifetime(cli_settings)
    assert longest_token_lifetime(cli_settings) >= cli_settings.token_ttl
    for moment in (int(clock()), new.active_from, allowed_at - 1):
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
    assert main(["keys", "rotate", "--data-dir", str(tmp_path), "--publish-for", "600"]) == 0
    assert main(["keys", "retire", "--data-dir", str(tmp_path)]) == 2
    assert "key_in_use" in capsys.readouterr().err
    assert len(KeySet.load(tmp_path / KEY_FILE_NAME).keys) == 2


def test_rotate_warns_below_the_jwks_max_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("KEYPROOF_CONFIG", raising=False)
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


# --- end to end: keyproof serve, a guarded app under uvicorn, the CLI -------------------


def guarded(url: str) -> Starlette:
    backend = KeyproofBackend(
        issuer=url,
        audience=url,
        jwks_url=f"{url}/.well-known/jwks.json",
        refresh_cooldown=1.0,
    )

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


@contextlib.contextmanager
def serve_in_thread(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("guarded app did not start")
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


def wait_for(condition, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def login(url: str) -> str:
    wallet = EthWallet.create()
    request = {"account": wallet.caip10(), "scope": "profile:read"}
    issued = httpx.post(f"{url}/v1/challenge", json=request).json()
    body = {"message": issued["message"], "signature": wallet.sign(issued["message"])}
    response = httpx.post(f"{url}/v1/token", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_rotation_end_to_end_with_a_running_guard(tmp_path: Path, server_log):
    data = tmp_path / "data"
    with KeyproofServer(data) as server, serve_in_thread(guarded(server.url)) as rs:
        server_log.append(server.log_path)

        def at_guard(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(f"{rs}/profile", headers=headers).status_code

        token_a = login(server.url)
        assert at_guard(token_a) == 200

        rotated = keys_cli(data, "rotate", "--publish-for", "2")
        assert rotated.returncode == 0, rotated.stderr
        jwks_url = f"{server.url}/.well-known/jwks.json"
        wait_for(lambda: len(httpx.get(jwks_url).json()["keys"]) == 2, "the JWKS to list 2 keys")
        assert at_guard(token_a) == 200

        def new_kid_token() -> str | None:
            token = login(server.url)
            return token if kid_of(token) != kid_of(token_a) else None

        token_b = wait_for(new_kid_token, "tokens signed by the new key")
        assert at_guard(token_b) == 200
        assert at_guard(token_a) == 200
        headers = {"Authorization": f"Bearer {token_b}"}
        # Fetched once at start, once more for the new kid; no restart.
        assert httpx.get(f"{rs}/profile", headers=headers).json()["jwks_fetches"] == 2

        refused = keys_cli(data, "retire")
        assert refused.returncode == 2
        assert "key_in_use" in refused.stderr
        assert len(httpx.get(jwks_url).json()["keys"]) == 2
        assert at_guard(token_a) == 200
