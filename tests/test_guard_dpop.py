"""DPoP-bound tokens at resource servers (RFC 9449 §7): the guard (Starlette and FastAPI),
``/v1/actions/verify`` and introspection. One named test per attack."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security

from keyproof.dpop import MAX_AGE, MAX_FUTURE
from keyproof.errors import TokenInvalid
from keyproof.guard import KeyproofBackend, KeyproofBearer, KeyproofUser
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from test_guard import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    JWKS_URL,
    GuardEnv,
    bearer,
    guard_env,
)
from test_token_attacks import EXPECT, Attack
from wallets import DPoPKey

RS = "http://rs.test"
ALGS = 'algs="ES256 Ed25519 EdDSA"'


@pytest.fixture
async def env(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[GuardEnv]:
    async with guard_env(tmp_path, clock) as running:
        yield running


@pytest.fixture
async def rs(env: GuardEnv) -> httpx.AsyncClient:
    return await env.guarded()


def dpop(env: GuardEnv, key: DPoPKey, token: str, method: str = "GET", url: str = "", **kw: Any):
    proof = key.proof(method, url or f"{RS}/whoami", now=int(env.clock()), token=token, **kw)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def bound_token(env: GuardEnv, key: DPoPKey, scope: str = "escrow:read escrow:release") -> str:
    return env.mint(scope, jkt=key.jkt, sid="session-1")


async def refused(response: httpx.Response, error: str, scheme: str = "DPoP") -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'{scheme} error="{error}"'), challenge
    if scheme == "DPoP":
        assert challenge.endswith(ALGS)


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
async def test_dpop_token_with_its_proof_is_accepted(env: GuardEnv, rs: httpx.AsyncClient, alg):
    key = DPoPKey(alg)
    token = bound_token(env, key)
    response = await rs.get("/whoami", headers=dpop(env, key, token))
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == ["escrow:read", "escrow:release"]
    release = await rs.post("/release", headers=dpop(env, key, token, "POST", f"{RS}/release"))
    assert release.status_code == 200, release.text


async def test_dpop_token_sent_as_bearer_is_refused(env: GuardEnv, rs: httpx.AsyncClient):
    token = bound_token(env, DPoPKey())
    await refused(await rs.get("/whoami", headers=bearer(token)), "invalid_token", "Bearer")


async def test_bearer_token_sent_with_the_dpop_scheme_is_refused(
    env: GuardEnv, rs: httpx.AsyncClient
):
    key, token = DPoPKey(), env.mint()
    await refused(await rs.get("/whoami", headers=dpop(env, key, token)), "invalid_token")


async def test_dpop_token_without_a_proof_is_refused(env: GuardEnv, rs: httpx.AsyncClient):
    token = bound_token(env, DPoPKey())
    response = await rs.get("/whoami", headers={"Authorization": f"DPoP {token}"})
    await refused(response, "invalid_dpop_proof")
    assert response.json()["reason"] == "invalid_dpop_proof"


async def test_proof_replay_is_refused_at_the_resource_server(env: GuardEnv, rs: httpx.AsyncClient):
    key = DPoPKey()
    headers = dpop(env, key, bound_token(env, key))
    assert (await rs.get("/whoami", headers=headers)).status_code == 200
    await refused(await rs.get("/whoami", headers=headers), "invalid_dpop_proof")


async def test_proof_replay_on_another_replica_sharing_the_store_is_refused(env: GuardEnv):
    shared = MemoryStore(clock=env.clock)
    one = await env.guarded(dpop_replay_store=shared)
    two = await env.guarded(dpop_replay_store=shared)
    key = DPoPKey()
    headers = dpop(env, key, bound_token(env, key))
    assert (await one.get("/whoami", headers=headers)).status_code == 200
    await refused(await two.get("/whoami", headers=headers), "invalid_dpop_proof")
    await shared.close()


async def test_proof_for_another_url_or_method_is_refused_at_the_resource_server(
    env: GuardEnv, rs: httpx.AsyncClient
):
    key = DPoPKey()
    token = bound_token(env, key)
    for method, url in (
        ("GET", f"{RS}/release"),
        ("POST", f"{RS}/whoami"),
        ("GET", "http://other.test/whoami"),
        ("GET", "https://rs.test/whoami"),
    ):
        response = await rs.get("/whoami", headers=dpop(env, key, token, method, url))
        await refused(response, "invalid_dpop_proof")


@pytest.mark.parametrize("offset", [-MAX_AGE - 1, MAX_FUTURE + 1], ids=["stale", "future"])
async def test_stale_or_future_proof_is_refused_at_the_resource_server(
    env: GuardEnv, rs: httpx.AsyncClient, offset: int
):
    key = DPoPKey()
    token = bound_token(env, key)
    headers = {"Authorization": f"DPoP {token}"}
    headers["DPoP"] = key.proof("GET", f"{RS}/whoami", now=int(env.clock()) + offset, token=token)
    await refused(await rs.get("/whoami", headers=headers), "invalid_dpop_proof")


async def test_proof_with_the_ath_of_another_token_is_refused(env: GuardEnv, rs: httpx.AsyncClient):
    key = DPoPKey()
    token, other = bound_token(env, key), bound_token(env, key, "escrow:read")
    headers = {"Authorization": f"DPoP {token}"}
    headers["DPoP"] = key.proof("GET", f"{RS}/whoami", now=int(env.clock()), token=other)
    await refused(await rs.get("/whoami", headers=headers), "invalid_dpop_proof")


async def test_proof_signed_by_another_key_is_refused(env: GuardEnv, rs: httpx.AsyncClient):
    holder, thief = DPoPKey(), DPoPKey()
    token = bound_token(env, holder)
    await refused(await rs.get("/whoami", headers=dpop(env, thief, token)), "invalid_dpop_proof")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_proof_with_alg_none_hs256_or_a_private_jwk_is_refused_at_the_resource_server(
    env: GuardEnv, rs: httpx.AsyncClient
):
    key = DPoPKey("Ed25519")
    token = bound_token(env, key)
    private_jwk = {**key.public_jwk, "d": _b64(key.private.private_bytes_raw())}
    for changes in ({"alg": "none"}, {"alg": "HS256"}, {"jwk": private_jwk}):
        headers = dpop(env, key, token)
        head, payload, signature = headers["DPoP"].split(".")
        header = {**json.loads(base64.urlsafe_b64decode(head + "==")), **changes}
        headers["DPoP"] = f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"
        await refused(await rs.get("/whoami", headers=headers), "invalid_dpop_proof")


async def test_missing_scope_of_a_dpop_token_answers_with_the_dpop_scheme(
    env: GuardEnv, rs: httpx.AsyncClient
):
    key = DPoPKey()
    token = bound_token(env, key, "escrow:read")
    response = await rs.post("/release", headers=dpop(env, key, token, "POST", f"{RS}/release"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'DPoP error="insufficient_scope", scope="escrow:release", {ALGS}'
    )


async def test_public_url_names_the_uri_proofs_are_for_behind_a_proxy(env: GuardEnv):
    behind = await env.guarded(public_url="https://api.example.com/")
    key = DPoPKey()
    token = bound_token(env, key)
    public = dpop(env, key, token, url="https://api.example.com/whoami")
    assert (await behind.get("/whoami", headers=public)).status_code == 200
    internal = dpop(env, key, token, url=f"{RS}/whoami")
    await refused(await behind.get("/whoami", headers=internal), "invalid_dpop_proof")


async def test_a_percent_encoded_path_is_proved_as_the_client_sent_it(env: GuardEnv):
    # Starlette's request.url decodes the path; the client's htu never does.
    key, rs = DPoPKey(), await env.guarded()
    token = bound_token(env, key)
    for path, status in [("/who%61mi", 200), ("/whoami%3F", 404)]:  # 404: past the guard
        response = await rs.get(path, headers=dpop(env, key, token, url=f"{RS}{path}"))
        assert response.status_code == status, response.text
    decoded = dpop(env, key, token, url=f"{RS}/whoami")
    await refused(await rs.get("/who%61mi", headers=decoded), "invalid_dpop_proof")


async def test_verify_alone_refuses_a_dpop_token(env: GuardEnv, rs: httpx.AsyncClient):
    key = DPoPKey()
    backend = env.backends[0]
    with pytest.raises(TokenInvalid):
        await backend.verify(bound_token(env, key))
    assert (await backend.verify(env.mint()))["sub"]


async def test_fastapi_dependency_checks_the_dpop_proof(env: GuardEnv):
    backend = KeyproofBackend(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL, clock=env.clock, http_client=env.issuer
    )
    guard = KeyproofBearer(backend)
    app = FastAPI()

    @app.get("/escrow")
    async def escrow(
        user: KeyproofUser = Security(guard, scopes=["escrow:release"]),  # noqa: B008
    ) -> dict[str, str]:
        return {"sub": user.sub, "token_type": user.token_type}

    key = DPoPKey()
    token = bound_token(env, key)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=RS) as client:
        ok = await client.get("/escrow", headers=dpop(env, key, token, url=f"{RS}/escrow"))
        assert ok.status_code == 200, ok.text
        assert ok.json()["token_type"] == "DPoP"
        no_proof = await client.get("/escrow", headers={"Authorization": f"DPoP {token}"})
        await refused(no_proof, "invalid_dpop_proof")
        as_bearer = await client.get("/escrow", headers=bearer(token))
        await refused(as_bearer, "invalid_token", "Bearer")
        narrow = bound_token(env, key, "escrow:read")
        short = await client.get("/escrow", headers=dpop(env, key, narrow, url=f"{RS}/escrow"))
        assert short.status_code == 403
        assert short.headers["www-authenticate"].startswith('DPoP error="insufficient_scope"')


# --- the issuer as a resource server: actions and introspection --------------------------

BACKEND_URL = "https://escrow.example/release/escrow-42"


def action_body(env: GuardEnv, key: DPoPKey | None, token: str) -> dict[str, Any]:
    body: dict[str, Any] = {"expect": EXPECT, "action": {}, "signature": "x"}
    if key is not None:
        proof = key.proof("POST", BACKEND_URL, now=int(env.clock()), token=token)
        body["dpop"] = {"proof": proof, "method": "POST", "url": BACKEND_URL}
    return body


async def test_actions_verify_checks_the_proof_the_backend_received(env: GuardEnv):
    key = DPoPKey()
    token = bound_token(env, key)
    headers = {"Authorization": f"DPoP {token}"}
    body = action_body(env, key, token)
    past_auth = await env.issuer.post("/v1/actions/verify", json=body, headers=headers)
    # The action itself is empty: the request got past the token and its proof.
    assert (past_auth.status_code, past_auth.json()["reason"]) == (400, "malformed_action")
    replayed = await env.issuer.post("/v1/actions/verify", json=body, headers=headers)
    await refused(replayed, "invalid_dpop_proof")
    no_proof = action_body(env, None, token)
    missing = await env.issuer.post("/v1/actions/verify", json=no_proof, headers=headers)
    await refused(missing, "invalid_dpop_proof")
    other_key = action_body(env, DPoPKey(), token)
    stolen = await env.issuer.post("/v1/actions/verify", json=other_key, headers=headers)
    await refused(stolen, "invalid_dpop_proof")
    as_bearer = action_body(env, key, token)
    sent = await env.issuer.post("/v1/actions/verify", json=as_bearer, headers=bearer(token))
    await refused(sent, "invalid_token", "Bearer")


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        ("not a url", "also not a url"),
        ("ftp://a/x", "mailto:b"),
        ("http://u:p@a/x", "https://b@c/y"),
    ],
    ids=["unparseable", "not_http", "user_info"],
)
async def test_actions_verify_refuses_a_proof_when_neither_uri_is_usable(
    env: GuardEnv, htu: str, url: str
):
    key = DPoPKey()
    token = bound_token(env, key)
    proof = key.proof("POST", htu, now=int(env.clock()), token=token)
    body = {**action_body(env, None, token), "dpop": {"proof": proof, "method": "POST", "url": url}}
    headers = {"Authorization": f"DPoP {token}"}
    response = await env.issuer.post("/v1/actions/verify", json=body, headers=headers)
    await refused(response, "invalid_dpop_proof")


@pytest.mark.parametrize(
    "dpop_member",
    [{"proof": "x"}, {"proof": 1, "method": "POST", "url": "u"}, "x", []],
    ids=["missing_members", "not_strings", "a_string", "a_list"],
)
async def test_actions_verify_refuses_a_malformed_dpop_member(env: GuardEnv, dpop_member: Any):
    token = bound_token(env, DPoPKey())
    body = {**action_body(env, None, token), "dpop": dpop_member}
    headers = {"Authorization": f"DPoP {token}"}
    response = await env.issuer.post("/v1/actions/verify", json=body, headers=headers)
    assert (response.status_code, response.json()["reason"]) == (400, "invalid_field")


async def test_introspection_of_a_dpop_token_names_its_type_and_key(env: GuardEnv):
    key = DPoPKey()
    reply = await env.issuer.post(
        "/v1/introspect", data={"token": bound_token(env, key)}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    body = reply.json()
    assert (body["active"], body["token_type"], body["cnf"]) == (True, "DPoP", {"jkt": key.jkt})
    plain = await env.issuer.post(
        "/v1/introspect", data={"token": env.mint()}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert plain.json()["token_type"] == "Bearer"
    assert "cnf" not in plain.json()


@pytest.mark.parametrize(
    "cnf",
    [{"jkt": "short"}, {"jkt": 7}, {"x5t#S256": "a" * 43}, "jkt", {"jkt": "a" * 43, "extra": 1}],
    ids=["short_jkt", "jkt_not_a_string", "other_confirmation", "not_an_object", "extra_member"],
)
async def test_token_with_a_confirmation_no_verifier_understands_is_refused(
    env: GuardEnv, rs: httpx.AsyncClient, cnf: Any
):
    attack = Attack(env, rs)
    await attack.refused(attack.signed(claims=attack.claims(cnf=cnf)))
