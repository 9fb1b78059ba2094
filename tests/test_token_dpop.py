"""DPoP at the token endpoint (RFC 9449 §5, §8), the OAuth form grants and sign-ins
bound to the client's key: one named test per way it could go wrong."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from keyproof.dpop import MAX_AGE, MAX_FUTURE
from keyproof.server._token_dpop import NONCE_BUCKET
from keyproof.stores.base import Kind

from conftest import FrozenClock
from session_env import TOKEN_URL, Issuer, running_issuer
from wallets import DPoPKey, EthWallet

JKT_URI = "urn:ietf:params:oauth:jwk-thumbprint:sha-256:"


@pytest.fixture
async def issuer(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Issuer]:
    async with running_issuer(tmp_path, clock) as running:
        yield running


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def reason(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["reason"]  # type: ignore[attr-defined]


# --- DPoP-bound sign-in ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
async def test_dpop_sign_in_gets_a_token_bound_to_the_key_and_a_refresh_token(
    issuer: Issuer, alg: str
):
    key = DPoPKey(alg)
    body = await issuer.sign_in(EthWallet.create(), key)
    assert body["token_type"] == "DPoP"
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    claims = claims_of(body["access_token"])
    assert claims["cnf"] == {"jkt": key.jkt}
    assert isinstance(claims["sid"], str)
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "Ed25519"


async def test_bearer_sign_in_gets_no_refresh_token_and_no_cnf(issuer: Issuer):
    body = await issuer.sign_in(EthWallet.create(), None, scope="escrow:read")
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body
    assert "cnf" not in claims_of(body["access_token"])


async def test_form_encoded_signed_challenge_grant(issuer: Issuer):
    wallet = EthWallet.create()
    message = await issuer.challenge(wallet, "escrow:read")
    response = await issuer.redeem(wallet, message, DPoPKey(), form=True)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert response.headers["cache-control"] == "no-store"


async def test_unknown_grant_type_is_unsupported_grant_type(issuer: Issuer):
    body = {"grant_type": "password", "username": "a", "password": "b"}
    for response in (
        await issuer.client.post("/v1/token", json=body),
        await issuer.client.post("/v1/token", data=body),
    ):
        assert reason(response) == (400, "unsupported_grant_type")
        assert response.json()["error"] == "unsupported_grant_type"


async def test_form_without_grant_type_is_refused(issuer: Issuer):
    response = await issuer.client.post("/v1/token", data={"message": "m", "signature": "s"})
    assert reason(response) == (400, "missing_field")


async def test_two_dpop_headers_are_refused(issuer: Issuer):
    wallet, key = EthWallet.create(), DPoPKey()
    message = await issuer.challenge(wallet, "escrow:read")
    proof = key.proof("POST", TOKEN_URL, now=issuer.now)
    body = {"message": message, "signature": wallet.sign(message)}
    response = await issuer.client.post(
        "/v1/token", json=body, headers=[("DPoP", proof), ("DPoP", proof)]
    )
    assert reason(response) == (400, "invalid_dpop_proof")


async def test_proof_for_another_url_or_method_is_refused_and_keeps_the_challenge(
    issuer: Issuer,
):
    wallet, key = EthWallet.create(), DPoPKey()
    message = await issuer.challenge(wallet, "escrow:release")
    body = {"message": message, "signature": wallet.sign(message)}
    for proof in (
        key.proof("POST", "http://127.0.0.1:8000/v1/revoke", now=issuer.now),
        key.proof("GET", TOKEN_URL, now=issuer.now),
        key.proof("POST", "http://evil.example/v1/token", now=issuer.now),
    ):
        response = await issuer.client.post("/v1/token", json=body, headers={"DPoP": proof})
        assert reason(response) == (400, "invalid_dpop_proof")
    # A bad proof never burns the signed challenge.
    assert (await issuer.redeem(wallet, message, key)).status_code == 200


@pytest.mark.parametrize("offset", [-MAX_AGE - 1, MAX_FUTURE + 1], ids=["stale", "future"])
async def test_stale_or_future_proof_is_refused_at_the_token_endpoint(issuer: Issuer, offset: int):
    wallet, key = EthWallet.create(), DPoPKey()
    message = await issuer.challenge(wallet, "escrow:read")
    proof = key.proof("POST", TOKEN_URL, now=issuer.now + offset)
    body = {"message": message, "signature": wallet.sign(message)}
    response = await issuer.client.post("/v1/token", json=body, headers={"DPoP": proof})
    assert reason(response) == (400, "invalid_dpop_proof")


async def test_proof_replay_at_the_token_endpoint_is_refused(issuer: Issuer):
    key = DPoPKey()
    proof = key.proof("POST", TOKEN_URL, now=issuer.now)
    replies = []
    for wallet in (EthWallet.create(), EthWallet.create()):
        message = await issuer.challenge(wallet, "escrow:read")
        body = {"message": message, "signature": wallet.sign(message)}
        replies.append(await issuer.client.post("/v1/token", json=body, headers={"DPoP": proof}))
    assert replies[0].status_code == 200
    assert reason(replies[1]) == (400, "invalid_dpop_proof")
    assert "already used" in replies[1].json()["error_description"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def reheaded(proof: str, **changes: object) -> str:
    """``proof`` with header members changed and its signature kept."""
    head, payload, signature = proof.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header.update(changes)
    return f"{b64(json.dumps(header).encode())}.{payload}.{signature}"


async def test_proof_with_alg_none_hs256_or_a_private_jwk_is_refused(issuer: Issuer):
    wallet, key = EthWallet.create(), DPoPKey("Ed25519")
    message = await issuer.challenge(wallet, "escrow:read")
    body = {"message": message, "signature": wallet.sign(message)}
    private_jwk = {**key.public_jwk, "d": b64(key.private.private_bytes_raw())}
    for changes in ({"alg": "none"}, {"alg": "HS256"}, {"jwk": private_jwk}):
        forged = reheaded(key.proof("POST", TOKEN_URL, now=issuer.now), **changes)
        response = await issuer.client.post("/v1/token", json=body, headers={"DPoP": forged})
        assert reason(response) == (400, "invalid_dpop_proof"), changes
    assert (await issuer.redeem(wallet, message, key)).status_code == 200


# --- policy: scopes that need DPoP -------------------------------------------------------


async def test_scope_needing_dpop_is_never_issued_as_a_bearer_token(issuer: Issuer):
    wallet = EthWallet.create()
    message = await issuer.challenge(wallet, "escrow:read escrow:release")
    refused = await issuer.redeem(wallet, message, None)
    assert reason(refused) == (400, "invalid_dpop_proof")
    assert "escrow:release" in refused.json()["error_description"]
    assert "access_token" not in refused.text
    granted = await issuer.redeem(wallet, message, DPoPKey())
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "escrow:read escrow:release"


async def test_dpop_required_refuses_every_bearer_sign_in(tmp_path: Path, clock: FrozenClock):
    from dataclasses import replace

    from session_env import SESSION_POLICY

    policy = replace(SESSION_POLICY, dpop_required=True)
    async with running_issuer(tmp_path, clock, policy=policy) as issuer:
        wallet = EthWallet.create()
        message = await issuer.challenge(wallet)
        assert reason(await issuer.redeem(wallet, message, None)) == (400, "invalid_dpop_proof")
        assert (await issuer.redeem(wallet, message, DPoPKey())).status_code == 200


# --- server nonces -------------------------------------------------------------------------


async def test_with_nonces_a_proof_without_the_nonce_gets_use_dpop_nonce_then_succeeds(
    tmp_path: Path, clock: FrozenClock
):
    async with running_issuer(tmp_path, clock, dpop_nonce=True) as issuer:
        wallet, key = EthWallet.create(), DPoPKey()
        message = await issuer.challenge(wallet, "escrow:release")
        counters = await issuer.store.count(Kind.COUNTER)
        first = await issuer.redeem(wallet, message, key)
        assert reason(first) == (400, "use_dpop_nonce")
        # Asking for a nonce is a protocol step, not a failed attempt.
        assert await issuer.store.count(Kind.COUNTER) == counters
        assert first.json()["error"] == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        for wrong_nonce in ("A" * 24, "é", "", nonce + "x"):
            wrong = await issuer.redeem(wallet, message, key, nonce=wrong_nonce)
            assert reason(wrong) == (400, "use_dpop_nonce"), wrong_nonce
        retried = await issuer.redeem(wallet, message, key, nonce=nonce)
        assert retried.status_code == 200, retried.text
        assert retried.headers["dpop-nonce"] == nonce


async def test_nonce_of_the_previous_minute_is_accepted_an_older_one_is_not(
    tmp_path: Path, clock: FrozenClock
):
    async with running_issuer(tmp_path, clock, dpop_nonce=True) as issuer:
        wallet, key = EthWallet.create(), DPoPKey()
        nonce = (await issuer.redeem(wallet, await issuer.challenge(wallet), key)).headers[
            "dpop-nonce"
        ]
        clock.advance(NONCE_BUCKET)
        accepted = await issuer.redeem(wallet, await issuer.challenge(wallet), key, nonce=nonce)
        assert accepted.status_code == 200, accepted.text
        clock.advance(NONCE_BUCKET)
        stale = await issuer.redeem(wallet, await issuer.challenge(wallet), key, nonce=nonce)
        assert reason(stale) == (400, "use_dpop_nonce")
        assert stale.headers["dpop-nonce"] != nonce


async def test_replicas_sharing_the_key_file_accept_each_others_nonces(
    tmp_path: Path, clock: FrozenClock
):
    async with (
        running_issuer(tmp_path, clock, dpop_nonce=True) as one,
        running_issuer(tmp_path, clock, dpop_nonce=True, store=one.store) as two,
    ):
        wallet, key = EthWallet.create(), DPoPKey()
        message = await one.challenge(wallet)
        nonce = (await one.redeem(wallet, message, key)).headers["dpop-nonce"]
        assert (await two.redeem(wallet, message, key, nonce=nonce)).status_code == 200


# --- a sign-in bound to the client's key ---------------------------------------------------


async def test_challenge_names_the_dpop_key_before_the_recap(issuer: Issuer):
    wallet, key = EthWallet.create(), DPoPKey()
    message = await issuer.challenge(wallet, "escrow:read", dpop_jkt=key.jkt)
    resources = message.split("Resources:\n", 1)[1].split("\n")
    assert resources[0] == f"- {JKT_URI}{key.jkt}"
    assert resources[1].startswith("- urn:recap:")
    response = await issuer.redeem(wallet, message, key)
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_message_bound_to_key_a_redeemed_with_key_b_is_refused(issuer: Issuer):
    wallet, key_a, key_b = EthWallet.create(), DPoPKey(), DPoPKey("Ed25519")
    message = await issuer.challenge(wallet, "escrow:read", dpop_jkt=key_a.jkt)
    stolen = await issuer.redeem(wallet, message, key_b)
    assert reason(stolen) == (400, "invalid_dpop_proof")
    assert reason(await issuer.redeem(wallet, message, None)) == (400, "invalid_dpop_proof")
    # The thief burnt nothing: the holder of key A still redeems it.
    assert (await issuer.redeem(wallet, message, key_a)).status_code == 200


async def test_message_naming_a_key_the_challenge_did_not_bind_is_refused(issuer: Issuer):
    wallet, key = EthWallet.create(), DPoPKey()
    message = await issuer.challenge(wallet)  # no dpop_jkt, no scope: no Resources yet
    forged = f"{message}\nResources:\n- {JKT_URI}{key.jkt}"
    assert reason(await issuer.redeem(wallet, forged, key)) == (401, "dpop_key_mismatch")
    bound = await issuer.challenge(wallet, dpop_jkt=key.jkt)
    other = DPoPKey()
    swapped = bound.replace(key.jkt, other.jkt)
    assert reason(await issuer.redeem(wallet, swapped, other)) == (401, "dpop_key_mismatch")
    dropped = bound.replace(f"\nResources:\n- {JKT_URI}{key.jkt}", "")
    assert reason(await issuer.redeem(wallet, dropped, key)) == (401, "dpop_key_mismatch")


@pytest.mark.parametrize("jkt", ["short", "x" * 43 + "=", "+" * 43, 7])
async def test_malformed_dpop_jkt_in_a_challenge_is_refused(issuer: Issuer, jkt: object):
    body = {"account": EthWallet.create().caip10(), "dpop_jkt": jkt}
    response = await issuer.client.post("/v1/challenge", json=body)
    assert reason(response) == (400, "invalid_field")


# --- metadata ---------------------------------------------------------------------------


async def test_metadata_advertises_dpop_and_the_refresh_grant(issuer: Issuer):
    metadata = (await issuer.client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "Ed25519", "EdDSA"]
    assert metadata["grant_types_supported"] == [
        "urn:keyproof:grant-type:signed-challenge",
        "refresh_token",
    ]
    assert metadata["token_endpoint"] == TOKEN_URL
