"""Revocation (RFC 7009), introspection (RFC 7662), and the guard consulting it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from keyproof.errors import ClientAuthenticationFailed, ConfigurationError
from keyproof.server.config import Settings
from keyproof.server.revocation import IntrospectionClients
from keyproof.stores.base import Kind

from conftest import FrozenClock
from test_guard import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    OTHER_AUDIENCE,
    SUBJECT,
    GuardEnv,
    bearer,
    guard_env,
)
from wallets import EthWallet

FORM = {"content-type": "application/x-www-form-urlencoded"}


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
async def env(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[GuardEnv]:
    async with guard_env(tmp_path, clock) as running:
        yield running


async def introspect(env: GuardEnv, token: str) -> dict[str, object]:
    response = await env.issuer.post("/v1/introspect", data={"token": token}, headers=basic())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


async def revoke(env: GuardEnv, token: str) -> httpx.Response:
    return await env.issuer.post("/v1/revoke", data={"token": token})


# --- revocation -----------------------------------------------------------------------


async def test_holder_revokes_its_token_from_a_wallet_login(env: GuardEnv):
    wallet = EthWallet.create()
    issued = await env.issuer.post(
        "/v1/challenge",
        json={"account": wallet.caip10(), "scope": "escrow:release", "audience": AUDIENCE},
    )
    message = issued.json()["message"]
    minted = await env.issuer.post(
        "/v1/token", json={"message": message, "signature": wallet.sign(message)}
    )
    token = minted.json()["access_token"]
    assert (await introspect(env, token))["active"] is True
    response = await revoke(env, token)
    assert (response.status_code, response.json()) == (200, {})
    assert await introspect(env, token) == {"active": False}


async def test_revoke_accepts_json_and_a_type_hint(env: GuardEnv):
    token = env.mint()
    response = await env.issuer.post(
        "/v1/revoke", json={"token": token, "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert await introspect(env, token) == {"active": False}


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 9000],
    ids=["empty", "garbage", "three_parts", "alg_none", "oversized"],
)
async def test_revoke_answers_200_for_anything(env: GuardEnv, token: str):
    response = await revoke(env, token)
    assert (response.status_code, response.json()) == (200, {})
    assert await env.store.count(Kind.REVOKED) == 0


async def test_revoke_ignores_foreign_and_expired_tokens(env: GuardEnv):
    foreign = env.mint_foreign("escrow:read")
    expired = env.mint(now=int(env.clock()) - 700)
    for token in (foreign, expired):
        assert (await revoke(env, token)).status_code == 200
    assert await env.store.count(Kind.REVOKED) == 0


async def test_revocation_is_kept_until_the_token_cannot_validate(env: GuardEnv):
    token = env.mint(lifetime=600)
    await revoke(env, token)
    assert await env.store.count(Kind.REVOKED) == 1
    env.clock.advance(600 + 29)
    assert await env.store.count(Kind.REVOKED) == 1
    env.clock.advance(1)
    assert await env.store.count(Kind.REVOKED) == 0


async def test_revoking_twice_is_fine(env: GuardEnv):
    token = env.mint()
    assert (await revoke(env, token)).status_code == 200
    assert (await revoke(env, token)).status_code == 200
    assert await env.store.count(Kind.REVOKED) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"content": b"token=a&token=b", "headers": FORM}, 400, "invalid_field"),
        ({"content": b"nothing=here", "headers": FORM}, 400, "missing_field"),
        ({"content": b"token=\xff", "headers": FORM}, 400, "invalid_field"),
        ({"content": b"token=a", "headers": {"content-type": "text/plain"}}, 415, None),
        ({"content": b"token=" + b"a" * 20000, "headers": FORM}, 413, "payload_too_large"),
        ({"json": {"token": 7}}, 400, "invalid_field"),
    ],
    ids=["repeated", "missing", "not_utf8", "wrong_type", "too_large", "not_a_string"],
)
async def test_revoke_refuses_malformed_requests(
    env: GuardEnv, kwargs: dict[str, object], status: int, reason: str | None
):
    response = await env.issuer.post("/v1/revoke", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    if reason:
        assert response.json()["reason"] == reason


@pytest.mark.parametrize("hint", [7, ["access_token"], {"a": 1}, True])
async def test_token_type_hint_that_is_not_a_string_is_refused(env: GuardEnv, hint: object):
    token = env.mint()
    body = {"token": token, "token_type_hint": hint}
    revoked = await env.issuer.post("/v1/revoke", json=body)
    introspected = await env.issuer.post("/v1/introspect", json=body, headers=basic())
    for response in (revoked, introspected):
        assert (response.status_code, response.json()["reason"]) == (400, "invalid_field")
    assert (await introspect(env, token))["active"] is True  # nothing was revoked


# --- introspection --------------------------------------------------------------------


async def test_introspection_of_an_active_token(env: GuardEnv):
    token = env.mint("escrow:read escrow:release")
    body = await introspect(env, token)
    now = int(env.clock())
    assert body == {
        "active": True,
        "token_type": "Bearer",
        "scope": "escrow:read escrow:release",
        "client_id": SUBJECT,
        "sub": SUBJECT,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": body["jti"],
    }
    assert isinstance(body["jti"], str)


async def test_introspection_covers_every_configured_audience(env: GuardEnv):
    assert (await introspect(env, env.mint(audience=OTHER_AUDIENCE)))["active"] is True
    assert await introspect(env, env.mint(audience="https://elsewhere.example")) == {
        "active": False
    }


async def test_introspection_of_expired_foreign_and_malformed_tokens(env: GuardEnv):
    expired = env.mint(lifetime=60)
    foreign = env.mint_foreign("escrow:read")
    other_issuer = env.mint(issuer="http://127.0.0.1:9999")
    env.clock.advance(60)
    for token in (expired, foreign, other_issuer, "garbage"):
        assert await introspect(env, token) == {"active": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(secret="wrong"),
        basic(client_id="someone-else"),
        basic(secret=CLIENT_SECRET + " "),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(CLIENT_ID.encode()).decode()},
        {"Authorization": f"Bearer {CLIENT_SECRET}"},
        {"Authorization": "Basic " + "A" * 2000},
    ],
    ids=["none", "wrong_secret", "unknown_client", "padded_secret", "not_base64", "no_colon",
         "bearer", "oversized"],
)  # fmt: skip
async def test_introspection_requires_client_credentials(env: GuardEnv, headers: dict[str, str]):
    response = await env.issuer.post("/v1/introspect", data={"token": env.mint()}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "active" not in response.text


async def test_introspection_credentials_are_form_urlencoded(tmp_path: Path):
    secret = "p@ss:word+ü"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    clients = IntrospectionClients({"rs.1": digest})
    encoded = base64.b64encode(b"rs.1:p%40ss%3Aword%2B%C3%BC").decode()
    assert clients.authenticate(f"Basic {encoded}") == "rs.1"
    with pytest.raises(ClientAuthenticationFailed):
        clients.authenticate("Basic " + base64.b64encode(b"rs.1:p@ss").decode())


def basic_header(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_no_configured_clients_means_no_introspection(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    clients = IntrospectionClients(settings.introspection_clients)
    empty = hashlib.sha256(b"").hexdigest()
    for client_id in ("", "x"):
        with pytest.raises(ClientAuthenticationFailed):
            clients.authenticate(basic_header(client_id, ""))
    assert empty not in repr(settings)


async def test_metadata_lists_both_endpoints(env: GuardEnv):
    metadata = (await env.issuer.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["revocation_endpoint"] == f"{ISSUER}/v1/revoke"
    assert metadata["introspection_endpoint"] == f"{ISSUER}/v1/introspect"
    assert metadata["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]


# --- configuration of introspection clients ---------------------------------------------


def test_clients_from_toml_and_environment(tmp_path: Path):
    digest = hashlib.sha256(b"s").hexdigest()
    config = tmp_path / "keyproof.toml"
    config.write_text(f'[keyproof.introspection_clients]\nescrow-rs = "{digest}"\n')
    from_file = Settings.load({"config": str(config), "data_dir": str(tmp_path)})
    clients = IntrospectionClients(from_file.introspection_clients)
    assert clients.authenticate(basic_header("escrow-rs", "s")) == "escrow-rs"
    env = {"KEYPROOF_INTROSPECTION_CLIENTS": f"a:{digest}, b:{digest}"}
    from_env = Settings.load({"data_dir": str(tmp_path)}, env)
    assert dict(from_env.introspection_clients) == {"a": digest, "b": digest}
    assert from_env.as_environment()["KEYPROOF_INTROSPECTION_CLIENTS"] == f"a:{digest},b:{digest}"
    assert digest not in repr(from_env)


@pytest.mark.parametrize(
    "value",
    ["a:short", "a", f"a b:{'0' * 64}", f"a:{'A' * 64}", {"a": 7}, ["a"]],
    ids=["short_digest", "no_digest", "bad_id", "uppercase_hex", "not_a_string", "a_list"],
)
def test_bad_client_configuration_fails_at_startup(tmp_path: Path, value: object):
    with pytest.raises(ConfigurationError):
        Settings.load({"data_dir": str(tmp_path), "introspection_clients": value})


# --- the guard consults introspection for high-value scopes -----------------------------


async def introspecting_guard(env: GuardEnv, secret: str) -> httpx.AsyncClient:
    """A guarded app that asks introspection about every ``escrow:release`` token."""
    return await env.guarded(
        introspect_scopes={"escrow:release"},
        introspection_url=f"{ISSUER}/v1/introspect",
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=secret,
    )


async def test_guard_refuses_a_revoked_high_value_token(env: GuardEnv):
    rs = await introspecting_guard(env, CLIENT_SECRET)
    token = env.mint("escrow:read escrow:release")
    assert (await rs.post("/release", headers=bearer(token))).status_code == 200
    await revoke(env, token)
    refused = await rs.post("/release", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert refused.json()["reason"] == "token_revoked"


async def test_guard_introspects_only_high_value_scopes(env: GuardEnv):
    rs = await introspecting_guard(env, CLIENT_SECRET)
    low = env.mint("escrow:read")
    await revoke(env, low)
    # Without introspection a revoked low-value token still validates until it expires.
    assert (await rs.get("/whoami", headers=bearer(low))).status_code == 200
    assert "/v1/introspect" not in env.transport.paths


async def test_guard_fails_closed_when_introspection_refuses_it(env: GuardEnv):
    rs = await introspecting_guard(env, "not the secret")
    response = await rs.post("/release", headers=bearer(env.mint()))
    assert response.status_code == 503
    assert response.json()["reason"] == "upstream_unavailable"
