"""DPoP sessions from the client's side (RFC 9449; specs/protocol.md §10-§11).

Against a real issuer and a resource server whose ``keyproof.guard`` checks every proof
and introspects every token: sign-ins bound to the session's key, a proof per request,
renewal by refresh (rotated, never reused), the issuer's and a resource server's
nonces, sessions that end (one new sign-in), revocation, and concurrent requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from keyproof_client import KEY_TYPES, KeyproofAuth, KeyproofClientError, generate_key
from keyproof_client._dpop import DPoPKey, htu
from keyproof_client._signin import SESSION_ENDED, SignIn

from keyproof import jose
from keyproof.dpop import JKT_URI_PREFIX, verify_proof

from .conftest import (
    DPOP_ONLY,
    SCOPE,
    TOKEN_PATH,
    Services,
    Traffic,
    async_client,
    frozen_auth,
    in_threads,
    revoke,
    running_services,
    sync_client,
)


@pytest.fixture(scope="module")
def with_nonces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """An issuer with ``dpop_nonce = true``: every token request needs its nonce."""
    with running_services(tmp_path_factory.mktemp("nonces"), dpop_nonce=True) as running:
        yield running


def claims_of(jws: str) -> dict[str, Any]:
    return jose.parse_compact(jws, max_length=8192).claims()


def sent(traffic: Traffic, path: str) -> list[httpx.Request]:
    return [r.request for r in traffic.responses if r.request.url.path == path]


def session_key(auth: KeyproofAuth) -> DPoPKey:
    """The session's DPoP key, read from inside: the client never hands it out."""
    assert auth._session is not None and auth._session.dpop is not None
    return auth._session.dpop


def refresh_by_hand(services: Services, refresh_token: str, key: DPoPKey) -> httpx.Response:
    url = services.issuer + TOKEN_PATH
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return httpx.post(url, data=form, headers={"DPoP": key.proof("POST", url, now=time.time())})


def check_bound_session(services: Services, auth: KeyproofAuth, traffic: Traffic, alg: str):
    """The challenge named the key, the token is bound to it, every request proved it."""
    token = auth.token
    assert token is not None and token.token_type == "DPoP" and token.refresh_token
    jkt = claims_of(token.access_token)["cnf"]["jkt"]
    [challenge] = [r for r in traffic.responses if r.request.url.path == "/v1/challenge"]
    assert json.loads(challenge.request.content)["dpop_jkt"] == jkt
    assert f"\n- {JKT_URI_PREFIX}{jkt}\n" in challenge.json()["message"]
    now = int(time.time())
    [redeem] = sent(traffic, TOKEN_PATH)
    proof = redeem.headers["dpop"]
    assert jose.parse_compact(proof, max_length=4096).header["alg"] == alg
    verify_proof(proof, method="POST", url=str(redeem.url), now=now, access_token=None, jkt=jkt)
    uses = sent(traffic, "/me")
    assert uses and {r.headers["authorization"] for r in uses} == {f"DPoP {token.access_token}"}
    for use in uses:
        proof = use.headers["dpop"]
        assert claims_of(proof)["htu"] == services.me  # no query
        verify_proof(
            proof, method="GET", url=str(use.url), now=now, access_token=token.access_token, jkt=jkt
        )
        if alg == "ES256":  # and a JOSE library nobody here wrote agrees
            public = jwt.PyJWK(jose.parse_compact(proof, max_length=4096).header["jwk"]).key
            jwt.decode(proof, public, algorithms=["ES256"], options={"verify_iat": False})
    assert len({claims_of(r.headers["dpop"])["jti"] for r in [redeem, *uses]}) == 1 + len(uses)


# -- every request proves the session's key, every key kind ---------------------------------


@pytest.mark.parametrize("dpop_alg", ["ES256", "Ed25519"])
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_session_is_bound_to_its_key_and_every_request_proves_it_sync(
    services: Services, key_type: str, dpop_alg: str
):
    auth = KeyproofAuth(services.issuer, generate_key(key_type), scope=SCOPE, dpop_alg=dpop_alg)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        answers = [client.get(services.me, params={"page": n}) for n in (1, 2)]
    assert [a.json()["token_type"] for a in answers] == ["DPoP", "DPoP"]
    check_bound_session(services, auth, traffic, dpop_alg)


@pytest.mark.parametrize("key_type", KEY_TYPES)
async def test_a_session_is_bound_to_its_key_and_every_request_proves_it_async(
    services: Services, key_type: str
):
    auth = KeyproofAuth(services.issuer, generate_key(key_type), scope=SCOPE, dpop_alg="Ed25519")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        answers = [await client.get(services.me, params={"page": n}) for n in (1, 2)]
    assert [a.json()["token_type"] for a in answers] == ["DPoP", "DPoP"]
    check_bound_session(services, auth, traffic, "Ed25519")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://api.example.com/jobs?page=2#top", "https://api.example.com/jobs"),
        ("HTTPS://API.example.com:443", "https://api.example.com/"),
        ("http://127.0.0.1:8000/a%3Fb?c=%23", "http://127.0.0.1:8000/a%3Fb"),
        ("http://[::1]:8000/x#y?z", "http://[::1]:8000/x"),
    ],
)
def test_a_proof_names_the_url_without_its_query_and_fragment(url: str, named: str):
    assert htu(url) == named == claims_of(DPoPKey().proof("GET", url, now=0))["htu"]


def test_a_percent_encoded_path_is_proved_as_sent(services: Services):
    auth, _ = frozen_auth(services)
    with httpx.Client(auth=auth) as client:
        answer = client.get(f"{services.resource}/m%65")  # /me, spelt otherwise
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP"


def test_the_token_alone_is_refused_by_the_resource_server(services: Services):
    auth, _ = frozen_auth(services)
    with httpx.Client(auth=auth) as client:
        client.get(services.me)
    stolen = httpx.get(services.me, headers={"Authorization": f"DPoP {auth.token.access_token}"})
    as_bearer = httpx.get(
        services.me, headers={"Authorization": f"Bearer {auth.token.access_token}"}
    )
    assert stolen.status_code == as_bearer.status_code == 401


def test_dpop_false_keeps_bearer_tokens_and_sign_ins(services: Services):
    auth, _ = frozen_auth(services, "solana", dpop=False)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        assert client.get(services.me).json()["token_type"] == "Bearer"
    assert auth.token.token_type == "Bearer" and auth.token.refresh_token is None
    assert "dpop_jkt" not in json.loads(sent(traffic, "/v1/challenge")[0].content)
    assert not any("dpop" in r.request.headers for r in traffic.responses)


def test_a_dpop_only_scope_is_granted_to_a_dpop_session_only(services: Services):
    scope = f"{SCOPE} {DPOP_ONLY}"
    bound = KeyproofAuth(services.issuer, generate_key("ethereum"), scope=scope)
    bearer = KeyproofAuth(services.issuer, generate_key("ethereum"), scope=scope, dpop=False)
    with httpx.Client(auth=bound) as client:
        assert client.get(services.me).json()["scope"] == f"{DPOP_ONLY} {SCOPE}"  # sorted
    with httpx.Client(auth=bearer) as client, pytest.raises(KeyproofClientError) as refused:
        client.get(services.me)
    assert (refused.value.code, refused.value.status) == ("invalid_dpop_proof", 400)


def test_an_unknown_dpop_algorithm_is_refused():
    with pytest.raises(KeyproofClientError) as refused:
        KeyproofAuth("https://auth.example.com", generate_key("ed25519"), dpop_alg="RS256")
    assert refused.value.code == "invalid_setting"


# -- renewal is a refresh, by the injected clock and by the issuer's answers ---------------


def test_a_due_token_is_refreshed_again_and_again_without_a_new_sign_in(services: Services):
    auth, clock = frozen_auth(services, "secp256k1")
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        seen = [client.get(services.me).json()["jti"]]
        refresh_tokens = [auth.token.refresh_token]
        for _ in range(3):
            clock.now = auth.token.renew_at(30)
            seen.append(client.get(services.me).json()["jti"])
            refresh_tokens.append(auth.token.refresh_token)
    assert len(set(seen)) == len(set(refresh_tokens)) == 4
    assert (traffic.sign_ins, traffic.refreshes) == (1, 3)
    forms = [
        r.request.content.decode() for r in traffic.responses if r.request.url.path == TOKEN_PATH
    ]
    spent = [f for f in forms if f.startswith("grant_type=refresh_token")]
    assert [f.split("refresh_token=")[-1] for f in spent] == refresh_tokens[:3]  # each once


async def test_a_due_token_is_refreshed_without_a_new_sign_in_async(services: Services):
    auth, clock = frozen_auth(services, "ethereum", dpop_alg="Ed25519")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        first = (await client.get(services.me)).json()["jti"]
        jkt = claims_of(auth.token.access_token)["cnf"]["jkt"]
        clock.now = auth.token.expires_at - 1
        second = await client.get(services.me)
    assert second.status_code == 200 and second.json()["jti"] != first
    assert claims_of(auth.token.access_token)["cnf"]["jkt"] == jkt  # the same key
    assert traffic.paths()[3:] == ["refresh 200", "/me 200"]


def test_a_used_refresh_token_is_refused_and_the_session_ends(services: Services):
    auth, clock = frozen_auth(services)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(services.me)
        used = auth.token.refresh_token
        clock.now = auth.token.expires_at
        client.get(services.me)  # refreshed: ``used`` is spent
        replayed = refresh_by_hand(services, used, session_key(auth))  # same key, even
        after = client.get(services.me)
    assert (replayed.status_code, replayed.json()["reason"]) == (400, "refresh_token_reused")
    assert after.status_code == 200
    # Reuse ended the session: its token is refused, its refresh too; one new sign-in.
    assert traffic.paths()[5:] == [
        "/me 401",
        "refresh 400",
        "/v1/challenge 201",
        "/v1/token 200",
        "/me 200",
    ]
    assert traffic.responses[6].json()["reason"] == "session_revoked"


@pytest.mark.parametrize("key_type", ["ed25519", "solana"])
def test_a_revoked_session_signs_in_once_more_sync(services: Services, key_type: str):
    auth, _ = frozen_auth(services, key_type)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(services.me)
        revoke(services, auth.token.refresh_token)  # POST /v1/revoke: the session ends
        answer = client.post(services.me, json={"job": 1})
        again = client.get(services.me)
    assert answer.json()["body"] == {"job": 1} and again.status_code == 200
    assert traffic.paths()[3:] == [
        "/me 401",
        "refresh 400",
        "/v1/challenge 201",
        "/v1/token 200",
        "/me 200",
        "/me 200",
    ]
    assert (traffic.sign_ins, traffic.refreshes) == (2, 0)


async def test_the_renewal_after_a_revocation_signs_in_again_async(services: Services):
    auth, clock = frozen_auth(services, "ethereum")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        await client.get(services.me)
        revoke(services, auth.token.refresh_token)
        clock.now = auth.token.expires_at  # renewed before the next request is sent
        answer = await client.get(services.me)
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP"
    assert traffic.paths()[3:] == ["refresh 400", "/v1/challenge 201", "/v1/token 200", "/me 200"]
    assert traffic.responses[3].json()["reason"] in SESSION_ENDED


def test_each_new_sign_in_makes_a_new_key(services: Services):
    auth, _ = frozen_auth(services)
    with httpx.Client(auth=auth) as client:
        client.get(services.me)
        first = claims_of(auth.token.access_token)["cnf"]["jkt"]
        revoke(services, auth.token.refresh_token)
        client.get(services.me)
    assert claims_of(auth.token.access_token)["cnf"]["jkt"] != first


# -- nonces: the issuer's (§10.2) and a resource server's (RFC 9449 §9) ---------------------


@pytest.mark.parametrize("dpop_alg", ["ES256", "Ed25519"])
def test_the_issuers_nonce_is_fetched_once_and_kept(with_nonces: Services, dpop_alg: str):
    auth, clock = frozen_auth(with_nonces, "secp256k1", dpop_alg=dpop_alg)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(with_nonces.me)
        clock.now = auth.token.expires_at
        assert client.get(with_nonces.me).json()["token_type"] == "DPoP"
    assert traffic.paths() == [
        "/v1/challenge 201",
        "/v1/token 400",  # use_dpop_nonce: the signed message is not used up
        "/v1/token 200",
        "/me 200",
        "refresh 200",  # with the nonce the last answer gave
        "/me 200",
    ]
    asked, signed_in, refreshed = (traffic.responses[i] for i in (1, 2, 4))
    assert asked.json()["error"] == "use_dpop_nonce"
    assert "nonce" not in claims_of(asked.request.headers["dpop"])
    assert claims_of(signed_in.request.headers["dpop"])["nonce"] == asked.headers["dpop-nonce"]
    assert claims_of(refreshed.request.headers["dpop"])["nonce"] == signed_in.headers["dpop-nonce"]


async def test_the_issuers_nonce_is_asked_for_and_used_async(with_nonces: Services):
    auth, _ = frozen_auth(with_nonces, "solana")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        answers = await asyncio.gather(*(client.get(with_nonces.me) for _ in range(4)))
    assert [a.json()["token_type"] for a in answers] == ["DPoP"] * 4
    assert traffic.paths()[:3] == ["/v1/challenge 201", "/v1/token 400", "/v1/token 200"]
    assert traffic.sign_ins == 1


def test_a_resource_servers_nonce_is_used_and_kept(services: Services):
    auth, _ = frozen_auth(services)
    traffic = Traffic()
    url = f"{services.resource}/nonce/me"
    with sync_client(auth, traffic) as client:
        first = client.post(url, json={"job": 2})
        second = client.get(url)
    assert first.json()["body"] == {"job": 2} and second.json()["token_type"] == "DPoP"
    steps = ["/v1/challenge 201", "/v1/token 200"]
    assert traffic.paths() == [*steps, "/nonce/me 401", "/nonce/me 200", "/nonce/me 200"]
    asked, resent = traffic.responses[2:4]
    assert claims_of(resent.request.headers["dpop"])["nonce"] == asked.headers["dpop-nonce"]
    assert resent.request.headers["authorization"] == asked.request.headers["authorization"]


# -- concurrent requests sharing one auth refresh once -------------------------------------


def test_threads_sharing_one_auth_refresh_once(services: Services):
    auth, clock = frozen_auth(services, "ethereum")
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(services.me)
        clock.now = auth.token.expires_at
        statuses = in_threads(8, lambda: client.get(services.me).status_code)
    assert statuses == [200] * 8
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


async def test_tasks_sharing_one_auth_refresh_once(services: Services):
    auth, clock = frozen_auth(services, "secp256k1")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        await client.get(services.me)
        clock.now = auth.token.expires_at
        answers = await asyncio.gather(*(client.get(services.me) for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["jti"] for a in answers}) == 1
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


async def test_a_sync_and_an_async_client_sharing_one_auth_refresh_once(services: Services):
    """Two refreshes of one refresh token would end the session (reuse detection)."""
    auth, clock = frozen_auth(services, "ed25519")
    traffic = Traffic()
    with sync_client(auth, traffic) as sync_api:
        sync_api.get(services.me)
        clock.now = auth.token.expires_at
        async with async_client(auth, traffic) as async_api:
            threads = asyncio.to_thread(in_threads, 4, lambda: sync_api.get(services.me))
            tasks = (async_api.get(services.me) for _ in range(4))
            from_threads, *from_tasks = await asyncio.gather(threads, *tasks)
    assert [a.status_code for a in [*from_threads, *from_tasks]] == [200] * 8
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)
    assert "refresh 400" not in traffic.paths()


# -- what is signed: only a challenge bound to this session's key ---------------------------


def challenge_text(services: Services, account: str, dpop_jkt: str | None) -> str:
    body = {"account": account, **({"dpop_jkt": dpop_jkt} if dpop_jkt else {})}
    answer = httpx.post(f"{services.issuer}/v1/challenge", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["message"]


def test_a_challenge_not_bound_to_the_session_key_is_not_signed(services: Services):
    key, mine, theirs = generate_key("ed25519"), DPoPKey(), DPoPKey("Ed25519")
    target = SignIn.build(services.issuer, key, scope=None, audience=None, domain=None, chain=None)
    unbound = challenge_text(services, key.account(), None)
    bound_elsewhere = challenge_text(services, key.account(), theirs.jkt)
    for text, jkt in [(unbound, mine.jkt), (bound_elsewhere, mine.jkt), (bound_elsewhere, None)]:
        with pytest.raises(KeyproofClientError, match="this session's DPoP key"):
            target.check(text, dpop_jkt=jkt)
    target.check(challenge_text(services, key.account(), mine.jkt), dpop_jkt=mine.jkt)
    target.check(unbound)
