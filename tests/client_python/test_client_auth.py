"""KeyproofAuth against a real issuer and resource server: sync and async, every key kind.

Sessions are DPoP-bound by default: renewal is a refresh, and ``dpop=False`` keeps the
bearer behaviour (a new sign-in each time). DPoP specifics are in test_client_dpop.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
from keyproof_client import KEY_TYPES, KeyproofAuth, KeyproofClientError, generate_key, sign_in

from keyproof.crypto.encoding import encode_base64url
from keyproof.testing import FrozenClock

from .conftest import (
    SCOPE,
    Services,
    Traffic,
    async_client,
    frozen_auth,
    in_threads,
    revoke,
    step,
    sync_client,
)

NAN = float("nan")


# -- signing in, every key kind ----------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_signs_in_on_first_use_and_reuses_the_token_sync(services: Services, key_type: str):
    key, traffic = generate_key(key_type), Traffic()
    auth = KeyproofAuth(services.issuer, key, scope=SCOPE, clock=FrozenClock(time.time()))
    with sync_client(auth, traffic) as client:
        first = client.get(services.me)
        second = client.get(services.me)
    assert first.status_code == second.status_code == 200
    assert first.json()["sub"] == key.account() == auth.account
    assert first.json()["scope"] == SCOPE
    assert first.json()["jti"] == second.json()["jti"]
    assert first.json()["token_type"] == auth.token.token_type == "DPoP"
    assert traffic.paths() == ["/v1/challenge 201", "/v1/token 200", "/me 200", "/me 200"]


@pytest.mark.parametrize("key_type", KEY_TYPES)
async def test_signs_in_on_first_use_and_reuses_the_token_async(services: Services, key_type: str):
    key, traffic = generate_key(key_type), Traffic()
    auth = KeyproofAuth(services.issuer, key, scope=[SCOPE], clock=FrozenClock(time.time()))
    async with async_client(auth, traffic) as client:
        first = await client.get(services.me)
        second = await client.get(services.me)
    assert first.status_code == second.status_code == 200
    assert first.json()["sub"] == key.account()
    assert first.json()["jti"] == second.json()["jti"]
    assert first.json()["token_type"] == auth.token.token_type == "DPoP"
    assert traffic.paths() == ["/v1/challenge 201", "/v1/token 200", "/me 200", "/me 200"]


def test_a_chain_the_issuer_does_not_allow_is_refused_by_its_code(services: Services):
    # The default configuration allows eip155:1 only: another chain is refused by name.
    key, traffic = generate_key("ethereum"), Traffic()
    auth = KeyproofAuth(services.issuer, key, scope=SCOPE, chain="eip155:8453")
    with sync_client(auth, traffic) as client, pytest.raises(KeyproofClientError) as refused:
        client.get(services.me)
    assert (refused.value.code, refused.value.status) == ("unsupported_account", 400)
    assert auth.account.startswith("eip155:8453:0x")


def test_sign_in_returns_a_token_the_resource_server_accepts(services: Services):
    key = generate_key("secp256k1")
    token = sign_in(services.issuer, key, scope=SCOPE)
    assert (token.token_type, token.scope) == ("Bearer", SCOPE)
    assert 0 < token.expires_in <= 600
    answer = httpx.get(services.me, headers={"Authorization": token.authorization()})
    assert answer.status_code == 200 and answer.json()["sub"] == key.account()


def test_an_issuer_refusal_carries_keyproofs_reason(services: Services):
    auth = KeyproofAuth(services.issuer, generate_key("solana"), scope="admin:all")
    traffic = Traffic()
    with sync_client(auth, traffic) as client, pytest.raises(KeyproofClientError) as refused:
        client.get(services.me)
    assert (refused.value.code, refused.value.status) == ("unknown_scope", 400)
    assert traffic.paths() == ["/v1/challenge 400"]  # the resource server was never called


@pytest.mark.parametrize(
    ("issuer", "renew_before"),
    [("http://auth.example.com", 30), ("https://auth.example.com", -1), ("http://[::1]:1", NAN)],
)
def test_settings_that_cannot_work_are_refused(issuer: str, renew_before: float):
    with pytest.raises(KeyproofClientError) as refused:
        KeyproofAuth(issuer, generate_key("ed25519"), renew_before=renew_before)
    assert refused.value.code == "invalid_setting"


# -- renewal before expiry ----------------------------------------------------------------


@pytest.mark.parametrize("dpop", [True, False], ids=["dpop", "bearer"])
def test_renews_shortly_before_expiry_by_its_clock(services: Services, dpop: bool):
    auth, clock = frozen_auth(services, dpop=dpop)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        first = client.get(services.me).json()["jti"]
        token = auth.token
        assert token is not None and token.expires_in == 600
        clock.now = token.expires_at - 30.5  # default renew_before: 30 s
        assert client.get(services.me).json()["jti"] == first
        clock.now = token.expires_at - 30
        renewed = client.get(services.me).json()["jti"]
    assert renewed != first and auth.token is not token
    # A DPoP session is refreshed; a bearer token needs a new sign-in.
    assert (traffic.sign_ins, traffic.refreshes) == ((1, 1) if dpop else (2, 0))


async def test_renews_at_half_life_when_that_is_sooner_async(services: Services):
    clock = FrozenClock(time.time())
    auth = KeyproofAuth(
        services.issuer, generate_key("ethereum"), scope=SCOPE, renew_before=900, clock=clock
    )
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        await client.get(services.me)
        token = auth.token
        assert token is not None
        clock.now = token.obtained_at + 299
        await client.get(services.me)
        assert traffic.refreshes == 0
        clock.now = token.obtained_at + 300
        await client.get(services.me)
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


# -- one retry on 401 ----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["secp256k1", "solana"])
def test_revoked_token_is_replaced_and_the_request_resent_sync(services: Services, key_type):
    auth, _ = frozen_auth(services, key_type)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        before = client.get(services.me).json()["jti"]
        revoke(services, auth.token.access_token)
        answer = client.post(services.me, json={"job": 7})
    assert answer.status_code == 200
    assert answer.json()["body"] == {"job": 7} and answer.json()["jti"] != before
    assert traffic.paths()[3:] == ["/me 401", "refresh 200", "/me 200"]


def test_revoked_bearer_token_is_replaced_by_a_new_sign_in(services: Services):
    auth, _ = frozen_auth(services, "ethereum", dpop=False)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        before = client.get(services.me).json()
        revoke(services, auth.token.access_token)
        answer = client.post(services.me, json={"job": 7})
    assert before["token_type"] == auth.token.token_type == "Bearer"
    assert answer.status_code == 200
    assert answer.json()["body"] == {"job": 7} and answer.json()["jti"] != before["jti"]
    assert traffic.paths()[3:] == [
        "/me 401",
        "/v1/challenge 201",
        "/v1/token 200",
        "/me 200",
    ]


async def test_revoked_token_is_replaced_and_the_request_resent_async(services: Services):
    auth, _ = frozen_auth(services, "ed25519")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        before = (await client.get(services.me)).json()["jti"]
        revoke(services, auth.token.access_token)
        answer = await client.post(services.me, json={"job": 8})
    assert answer.status_code == 200
    assert answer.json()["body"] == {"job": 8} and answer.json()["jti"] != before
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


def test_a_resource_server_that_always_answers_401_is_asked_twice_only(services: Services):
    auth, _ = frozen_auth(services)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        answer = client.get(f"{services.resource}/foreign/me")
    assert answer.status_code == 401
    sign_in_steps = ["/v1/challenge 201", "/v1/token 200"]
    foreign = "/foreign/me 401"
    assert traffic.paths() == [*sign_in_steps, foreign, "refresh 200", foreign]


def test_a_streamed_upload_is_not_sent_twice(services: Services):
    auth, _ = frozen_auth(services)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(services.me)
        revoke(services, auth.token.access_token)
        body = iter([json.dumps({"job": 9}).encode()])
        streamed = client.post(services.me, content=body)
        assert streamed.status_code == 401  # returned as is: the body is gone
        assert (traffic.sign_ins, traffic.refreshes) == (1, 0)
        assert client.post(services.me, json={"job": 9}).status_code == 200
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


# -- concurrent requests share one sign-in ----------------------------------------------


def test_threads_sharing_one_auth_sign_in_once(services: Services):
    auth, _ = frozen_auth(services, "secp256k1")
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        statuses = in_threads(8, lambda: client.get(services.me).status_code)
    assert statuses == [200] * 8
    assert traffic.sign_ins == 1


async def test_tasks_sharing_one_auth_sign_in_once(services: Services):
    auth, _ = frozen_auth(services, "solana")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        answers = await asyncio.gather(*(client.get(services.me) for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["jti"] for a in answers}) == 1
    assert traffic.sign_ins == 1


async def test_tasks_refused_together_sign_in_again_once(services: Services):
    auth, _ = frozen_auth(services, "ethereum")
    traffic = Traffic()
    async with async_client(auth, traffic) as client:
        await client.get(services.me)
        revoke(services, auth.token.access_token)
        answers = await asyncio.gather(*(client.get(services.me) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert (traffic.sign_ins, traffic.refreshes) == (1, 1)


# -- what is signed -------------------------------------------------------------------------


def test_a_challenge_for_another_domain_is_not_signed(services: Services):
    auth = KeyproofAuth(services.issuer, generate_key("ed25519"), domain="app.example.com")
    traffic = Traffic()
    with sync_client(auth, traffic) as client, pytest.raises(KeyproofClientError) as refused:
        client.get(services.me)
    assert refused.value.code == "challenge_refused"
    assert "app.example.com" in refused.value.description
    assert traffic.paths() == ["/v1/challenge 201"]  # nothing was redeemed


def challenge_text(services: Services, account: str, scope: str | None = None) -> str:
    body = {"account": account, **({"scope": scope} if scope else {})}
    answer = httpx.post(f"{services.issuer}/v1/challenge", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["message"]


def test_a_challenge_naming_another_account_is_not_signed(services: Services):
    from keyproof_client._signin import SignIn

    mine, theirs = generate_key("ethereum"), generate_key("ethereum")
    sign_in_as_me = SignIn.build(
        services.issuer, mine, scope=None, audience=None, domain=None, chain=None
    )
    with pytest.raises(KeyproofClientError, match="another account"):
        sign_in_as_me.check(challenge_text(services, theirs.account()))
    sign_in_as_me.check(challenge_text(services, mine.account()))


def test_a_challenge_granting_unasked_scopes_is_not_signed(services: Services):
    from keyproof_client._signin import SignIn

    key = generate_key("solana")
    asked_nothing = SignIn.build(
        services.issuer, key, scope=None, audience=None, domain=None, chain=None
    )
    with pytest.raises(KeyproofClientError, match="not asked: profile/read"):
        asked_nothing.check(challenge_text(services, key.account(), scope=SCOPE))


def test_a_challenge_for_another_audience_is_not_signed(services: Services):
    from keyproof_client._signin import SignIn

    key = generate_key("secp256k1")
    other = SignIn.build(
        services.issuer, key, scope=SCOPE, audience="https://other.example", domain=None, chain=None
    )
    with pytest.raises(KeyproofClientError, match="another audience"):
        other.check(challenge_text(services, key.account(), scope=SCOPE))


def test_text_that_is_no_sign_in_message_is_not_signed(services: Services):
    from keyproof_client._signin import SignIn

    key = generate_key("ed25519")
    target = SignIn.build(services.issuer, key, scope=None, audience=None, domain=None, chain=None)
    with pytest.raises(KeyproofClientError, match="does not parse"):
        target.check(challenge_text(services, key.account()) + "\n")


# -- nothing secret in logs or reprs ---------------------------------------------------------


def dpop_secret(auth: KeyproofAuth) -> list[str]:
    """The session's DPoP private key, as a JWK ``d`` and as hex (read from inside: the
    client never hands it out)."""
    private = auth._session.dpop._private
    raw = private.private_numbers().private_value.to_bytes(32, "big")
    return [encode_base64url(raw), raw.hex()]


@pytest.mark.parametrize("dpop", [True, False], ids=["dpop", "bearer"])
def test_no_key_proof_signature_or_token_in_logs_or_reprs(services: Services, caplog, dpop):
    caplog.set_level(logging.DEBUG)
    key = generate_key("ethereum")
    clock = FrozenClock(time.time())
    auth = KeyproofAuth(services.issuer, key, scope=SCOPE, clock=clock, dpop=dpop)
    traffic = Traffic()
    with sync_client(auth, traffic) as client:
        client.get(services.me)
        revoke(services, auth.token.access_token)
        assert client.get(services.me).status_code == 200  # renewed after a 401
        clock.now = auth.token.expires_at  # and renewed again before the next request
        assert client.get(services.me).status_code == 200
        hidden = [key.secret_text(), key.secret_text()[2:], *(dpop_secret(auth) if dpop else [])]
    answers = [r.json() for r in traffic.responses if r.request.url.path == "/v1/token"]
    hidden += [a[name] for a in answers for name in ("access_token", "refresh_token") if name in a]
    signed = [r.request for r in traffic.responses if step(r.request) == "/v1/token"]
    hidden += [json.loads(request.content)["signature"] for request in signed]
    hidden += [r.request.headers["dpop"] for r in traffic.responses if "dpop" in r.request.headers]
    # key; DPoP key; three token answers; signatures; proofs: 3 at /v1/token, 4 at /me
    assert len(hidden) == (2 + 2 + 3 * 2 + 1 + 7 if dpop else 2 + 3 + 3)
    assert caplog.records
    shown = [
        caplog.text,
        *(str(record.args) for record in caplog.records),
        repr(auth),
        repr(key),
        repr(auth.token),
        str(auth.token),
        repr(auth._session),
        repr(KeyproofClientError("invalid_key", "x")),
    ]
    assert auth.account in caplog.text  # the account is logged; what proves it is not
    assert [secret[:12] for secret in hidden if any(secret in text for text in shown)] == []
