"""Rotating refresh tokens of DPoP-bound sessions: rotation, reuse detection, key binding,
lifetimes, narrowing-only scope, policy re-check and revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from keyproof.server.sessions import EXPIRED_NOTICE
from keyproof.stores.base import Kind
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from session_env import SESSION_POLICY, Issuer, running_issuer
from wallets import DPoPKey, EthWallet


@pytest.fixture
async def issuer(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Issuer]:
    async with running_issuer(tmp_path, clock) as running:
        yield running


def reason(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["reason"]  # type: ignore[attr-defined]


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def signed_in(issuer: Issuer, scope: str = "escrow:read escrow:release"):
    key = DPoPKey()
    return key, await issuer.sign_in(EthWallet.create(), key, scope)


async def test_refresh_rotates_and_keeps_the_session_bound_to_the_same_key(issuer: Issuer):
    key, first = await signed_in(issuer)
    issuer.clock.advance(60)
    response = await issuer.refresh(first["refresh_token"], key)
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["token_type"] == "DPoP"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"] == "escrow:read escrow:release"
    old, new = claims_of(first["access_token"]), claims_of(second["access_token"])
    assert new["cnf"] == old["cnf"] == {"jkt": key.jkt}
    assert new["sid"] == old["sid"]
    assert new["sub"] == old["sub"]
    assert new["iat"] == old["iat"] + 60
    json_refresh = await issuer.refresh(second["refresh_token"], key, form=False)
    assert json_refresh.status_code == 200, json_refresh.text


async def test_refresh_token_reuse_ends_the_session(issuer: Issuer):
    key, first = await signed_in(issuer)
    second = (await issuer.refresh(first["refresh_token"], key)).json()
    replayed = await issuer.refresh(first["refresh_token"], key)
    assert reason(replayed) == (400, "refresh_token_reused")
    assert replayed.json()["error"] == "invalid_grant"
    # The whole session died: the holder's own, newer refresh token is refused too,
    # and its access tokens are no longer active.
    assert reason(await issuer.refresh(second["refresh_token"], key)) == (400, "session_revoked")
    assert (await issuer.introspect(second["access_token"])) == {"active": False}
    assert (await issuer.introspect(first["access_token"])) == {"active": False}


async def test_refresh_with_another_dpop_key_is_refused(issuer: Issuer):
    _key, first = await signed_in(issuer)
    thief = DPoPKey("Ed25519")
    stolen = await issuer.refresh(first["refresh_token"], thief)
    assert reason(stolen) == (400, "invalid_dpop_proof")
    assert reason(await issuer.refresh(first["refresh_token"], None)) == (400, "invalid_dpop_proof")
    # Refused before rotation: the holder's token still works.
    assert (await issuer.refresh(first["refresh_token"], _key)).status_code == 200


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
async def test_refresh_after_revocation_is_refused(issuer: Issuer, hint: str | None):
    key, first = await signed_in(issuer)
    body = {"token": first["refresh_token"]}
    if hint is not None:
        body["token_type_hint"] = hint
    revoked = await issuer.client.post("/v1/revoke", data=body)
    assert (revoked.status_code, revoked.json()) == (200, {})
    # Whatever the hint says, the refresh token is found (RFC 7009 §2.1) and the session ends.
    assert reason(await issuer.refresh(first["refresh_token"], key)) == (
        400,
        "refresh_token_invalid",
    )
    assert (await issuer.introspect(first["access_token"])) == {"active": False}
    assert await issuer.store.count(Kind.SESSION_REVOKED) == 1


async def test_revoking_a_rotated_refresh_token_ends_the_session(issuer: Issuer):
    """A client logging out with a token another of its tasks already rotated."""
    key, first = await signed_in(issuer)
    second = (await issuer.refresh(first["refresh_token"], key)).json()
    revoked = await issuer.client.post("/v1/revoke", data={"token": first["refresh_token"]})
    assert (revoked.status_code, revoked.json()) == (200, {})
    assert reason(await issuer.refresh(second["refresh_token"], key)) == (400, "session_revoked")
    assert (await issuer.introspect(second["access_token"])) == {"active": False}


async def test_revoking_an_access_token_leaves_its_session(issuer: Issuer):
    key, first = await signed_in(issuer)
    await issuer.client.post("/v1/revoke", data={"token": first["access_token"]})
    assert (await issuer.introspect(first["access_token"])) == {"active": False}
    second = await issuer.refresh(first["refresh_token"], key)
    assert second.status_code == 200
    assert (await issuer.introspect(second.json()["access_token"]))["active"] is True


async def test_scope_widening_on_refresh_is_refused(issuer: Issuer):
    key, first = await signed_in(issuer, "escrow:read")
    for wider in ("escrow:read escrow:release", "profile:read", "admin:all"):
        refused = await issuer.refresh(first["refresh_token"], key, scope=wider)
        assert refused.status_code == 400, wider
        assert refused.json()["error"] == "invalid_scope"
    assert (await issuer.refresh(first["refresh_token"], key)).status_code == 200


async def test_scope_may_narrow_on_refresh_and_widen_back_to_the_session(issuer: Issuer):
    key, first = await signed_in(issuer)
    narrow = (await issuer.refresh(first["refresh_token"], key, scope="escrow:read")).json()
    assert narrow["scope"] == "escrow:read"
    full = (await issuer.refresh(narrow["refresh_token"], key)).json()
    assert full["scope"] == "escrow:read escrow:release"


async def test_a_withdrawn_grant_is_not_refreshed(tmp_path: Path, clock: FrozenClock):
    store = MemoryStore(clock=clock)
    async with running_issuer(tmp_path, clock, store=store) as before:
        key, first = await signed_in(before)
    withdrawn = replace(SESSION_POLICY, namespaces={})
    async with running_issuer(tmp_path, clock, store=store, policy=withdrawn) as after:
        refreshed = await after.refresh(first["refresh_token"], key)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "escrow:read"
    await store.close()


async def test_refresh_after_the_idle_timeout_is_refused(issuer: Issuer):
    key, first = await signed_in(issuer)
    issuer.clock.advance(issuer.settings.session_idle_ttl - 1)
    second = (await issuer.refresh(first["refresh_token"], key)).json()
    issuer.clock.advance(issuer.settings.session_idle_ttl)
    late = await issuer.refresh(second["refresh_token"], key)
    assert reason(late) == (400, "refresh_token_invalid")


async def test_refresh_after_the_absolute_lifetime_is_refused(issuer: Issuer):
    key, body = await signed_in(issuer)
    idle, absolute = issuer.settings.session_idle_ttl, issuer.settings.session_ttl
    # Used often enough never to idle out, the session still ends on time.
    for _ in range(absolute // (idle - 60) + 1):
        issuer.clock.advance(idle - 60)
        response = await issuer.refresh(body["refresh_token"], key)
        if response.status_code != 200:
            break
        body = response.json()
    assert reason(response) == (400, "session_expired")
    issuer.clock.advance(EXPIRED_NOTICE)
    assert reason(await issuer.refresh(body["refresh_token"], key)) == (
        400,
        "refresh_token_invalid",
    )


async def test_no_access_token_of_a_session_outlives_it(issuer: Issuer):
    key, body = await signed_in(issuer)
    started = claims_of(body["access_token"])["iat"]
    assert isinstance(started, int)
    session_end = started + issuer.settings.session_ttl
    idle = issuer.settings.session_idle_ttl
    lifetimes = []
    for _ in range(issuer.settings.session_ttl // (idle - 60) + 1):
        issuer.clock.advance(idle - 60)
        response = await issuer.refresh(body["refresh_token"], key)
        if response.status_code != 200:
            break
        body = response.json()
        claims = claims_of(body["access_token"])
        assert claims["exp"] <= session_end
        assert body["expires_in"] == claims["exp"] - claims["iat"]  # type: ignore[operator]
        lifetimes.append(body["expires_in"])
    assert reason(response) == (400, "session_expired")
    assert lifetimes[0] == issuer.settings.token_ttl
    assert lifetimes[-1] < issuer.settings.token_ttl, "the last one ends with the session"


async def test_refresh_proof_replay_is_refused(issuer: Issuer):
    key, first = await signed_in(issuer)
    from session_env import TOKEN_URL

    proof = key.proof("POST", TOKEN_URL, now=issuer.now)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    ok = await issuer.client.post("/v1/token", data=form, headers={"DPoP": proof})
    assert ok.status_code == 200
    form["refresh_token"] = ok.json()["refresh_token"]
    again = await issuer.client.post("/v1/token", data=form, headers={"DPoP": proof})
    assert reason(again) == (400, "invalid_dpop_proof")
    # The proof was refused before rotation: the refresh token is still good.
    assert (await issuer.refresh(form["refresh_token"], key)).status_code == 200


@pytest.mark.parametrize("token", ["", "x" * 43, "not a token", "a.b.c", "A" * 44])
async def test_unknown_or_malformed_refresh_token_is_invalid_grant(issuer: Issuer, token: str):
    response = await issuer.refresh(token, DPoPKey())
    assert reason(response) == (400, "refresh_token_invalid")
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_tokens_are_stored_hashed(issuer: Issuer):
    _key, body = await signed_in(issuer)
    assert isinstance(issuer.store, MemoryStore)
    stored = {key for (_kind, key, _value, _expires) in issuer.store._items()}
    assert body["refresh_token"] not in stored
    assert not any(body["refresh_token"].encode() in bytes(v) for v, _ in _values(issuer.store))
    assert await issuer.store.count(Kind.REFRESH) == 1


def _values(store: MemoryStore) -> list[tuple[bytes, float]]:
    return [(v, t) for _kind, _key, v, t in store._items()]


async def test_refreshes_are_audited_without_their_tokens(issuer: Issuer):
    import json

    key, first = await signed_in(issuer)
    second = (await issuer.refresh(first["refresh_token"], key)).json()
    await issuer.refresh(first["refresh_token"], key)
    text = (issuer.settings.data_dir / "audit.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    refreshes = [(line["outcome"], line["code"]) for line in lines if line["event"] == "refresh"]
    assert refreshes == [("success", None), ("refused", "refresh_token_reused")]
    for secret in (first["refresh_token"], second["refresh_token"], second["access_token"]):
        assert secret not in text
