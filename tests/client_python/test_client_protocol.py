"""An issuer that answers outside the protocol: the sign-in and refresh flows, fed
answers by hand.

``SignIn.flow`` and ``SignIn.refresh`` do no I/O: they yield requests and are sent
answers, so what a broken or hostile issuer could answer is given to them directly,
around a real challenge text.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from keyproof_client import KeyproofClientError, generate_key
from keyproof_client._dpop import DPoPKey, ServerNonces
from keyproof_client._signin import SESSION_ENDED, SignIn

from keyproof import jose

from .conftest import Services

GOOD_TOKEN = {"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 600, "scope": ""}


def answer(request: httpx.Request, status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=request, **kwargs)


def run(services: Services, token_answer: dict, dpop: DPoPKey | None = None) -> Any:
    """Sign in against the real issuer's challenge, then hand the flow ``token_answer``."""
    key = generate_key("ed25519")
    target = SignIn.build(services.issuer, key, scope=None, audience=None, domain=None, chain=None)
    flow = target.flow(clock=lambda: 1000.0, extensions={}, dpop=dpop)
    challenge = next(flow)
    real = httpx.post(str(challenge.url), content=challenge.content, headers=challenge.headers)
    redeem = flow.send(real)
    assert redeem.url.path == "/v1/token"
    try:
        flow.send(answer(redeem, **token_answer))
    except StopIteration as done:
        return done.value
    except KeyproofClientError as refused:
        return refused
    raise AssertionError("the flow asked for a third request")


def test_a_well_formed_answer_gives_a_token(services: Services):
    token = run(services, {"status": 200, "json": GOOD_TOKEN})
    assert token.access_token == "a.b.c" and token.expires_at == 1600.0
    assert token.authorization() == "Bearer a.b.c"
    assert "a.b.c" not in repr(token)


@pytest.mark.parametrize(
    "change",
    [
        {"token_type": "DPoP"},
        {"token_type": 1},
        {"expires_in": 0},
        {"expires_in": 3601},
        {"expires_in": True},
        {"expires_in": "600"},
        {"access_token": "a b"},
        {"access_token": ""},
        {"access_token": "x" * 8193},
        {"scope": ["profile:read"]},
    ],
    ids=str,
)
def test_a_token_answer_outside_the_protocol_is_refused(services: Services, change: dict):
    refused = run(services, {"status": 200, "json": {**GOOD_TOKEN, **change}})
    assert isinstance(refused, KeyproofClientError) and refused.code == "unexpected_response"


def test_bearer_is_case_insensitive(services: Services):
    token = run(services, {"status": 200, "json": {**GOOD_TOKEN, "token_type": "bearer"}})
    assert token.token_type == "Bearer"


@pytest.mark.parametrize(
    ("status", "kwargs", "code"),
    [
        (201, {"json": GOOD_TOKEN}, "unexpected_response"),
        (200, {"text": "<html>"}, "unexpected_response"),
        (200, {"json": ["a.b.c"]}, "unexpected_response"),
        (502, {"text": "<html>Bad gateway</html>"}, "unexpected_response"),
        (503, {"json": {"error": "x", "reason": 7}}, "unexpected_response"),
        (401, {"json": {"error": "invalid_grant", "reason": "nonce_used"}}, "nonce_used"),
    ],
)
def test_an_error_answer_keeps_the_issuers_reason_or_says_it_has_none(
    services: Services, status: int, kwargs: dict, code: str
):
    refused = run(services, {"status": status, **kwargs})
    assert isinstance(refused, KeyproofClientError) and refused.code == code
    assert refused.status == (None if 200 <= status < 300 else status)


def test_a_rate_limit_answer_says_when_to_come_back(services: Services):
    body = {"error": "slow_down", "reason": "rate_limited", "error_description": "wait\nnow\x1b"}
    refused = run(services, {"status": 429, "json": body, "headers": {"Retry-After": "60"}})
    assert (refused.code, refused.status, refused.retry_after) == ("rate_limited", 429, 60)
    assert refused.description == "wait?now?"  # one printable line, whatever was sent


# -- DPoP sign-ins and refreshes ------------------------------------------------------------

DPOP_TOKEN = {**GOOD_TOKEN, "token_type": "DPoP", "refresh_token": "r-1"}


def test_a_dpop_sign_in_gives_a_dpop_token_and_its_refresh_token(services: Services):
    token = run(services, {"status": 200, "json": DPOP_TOKEN}, DPoPKey())
    assert (token.token_type, token.refresh_token) == ("DPoP", "r-1")
    assert token.authorization() == "DPoP a.b.c"
    assert "r-1" not in repr(token)


@pytest.mark.parametrize(
    "change",
    [
        {"token_type": "Bearer"},  # a proof was sent: a bearer answer is a downgrade
        {"refresh_token": 7},
        {"refresh_token": "r 1"},
        {"refresh_token": "r" * 1025},
    ],
    ids=str,
)
def test_a_dpop_token_answer_outside_the_protocol_is_refused(services: Services, change: dict):
    refused = run(services, {"status": 200, "json": {**DPOP_TOKEN, **change}}, DPoPKey())
    assert isinstance(refused, KeyproofClientError) and refused.code == "unexpected_response"


def refresh(answers: list[dict]) -> tuple[Any, list[httpx.Request]]:
    """Run a refresh, answering its requests in turn; its result and what it sent."""
    target = SignIn.build(
        "https://auth.example.com",
        generate_key("ed25519"),
        scope=None,
        audience=None,
        domain=None,
        chain=None,
    )
    flow = target.refresh(
        "r-1", DPoPKey(), nonces=ServerNonces(), clock=lambda: 1000.0, extensions={}
    )
    sent = [next(flow)]
    try:
        for given in answers:
            sent.append(flow.send(answer(sent[-1], **given)))
    except StopIteration as done:
        return done.value, sent
    except KeyproofClientError as refused:
        return refused, sent
    raise AssertionError("the flow asked for more requests")


def ended(reason: str) -> dict:
    return {"status": 400, "json": {"error": "invalid_grant", "reason": reason}}


@pytest.mark.parametrize("reason", sorted(SESSION_ENDED))
def test_a_refresh_refused_because_the_session_ended_asks_for_a_sign_in(reason: str):
    result, sent = refresh([ended(reason)])
    assert result is None and len(sent) == 1
    assert sent[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent[0].content == b"grant_type=refresh_token&refresh_token=r-1"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, "invalid_dpop_proof", "invalid_dpop_proof"),
        (400, "invalid_scope", "scope_not_allowed"),
        (429, "slow_down", "rate_limited"),
        (503, "temporarily_unavailable", "store_unavailable"),
    ],
)
def test_any_other_refused_refresh_is_an_error_not_a_new_sign_in(status, error, code):
    result, sent = refresh([{"status": status, "json": {"error": error, "reason": code}}])
    assert isinstance(result, KeyproofClientError) and len(sent) == 1
    assert (result.code, result.status) == (code, status)


def test_a_refresh_asked_for_a_nonce_is_sent_once_more_with_it():
    nonce = {"error": "use_dpop_nonce", "reason": "use_dpop_nonce"}
    asked = {"status": 400, "json": nonce, "headers": {"DPoP-Nonce": "n-1"}}
    result, sent = refresh([asked, {"status": 200, "json": DPOP_TOKEN}])
    assert result.refresh_token == "r-1" and len(sent) == 2
    proofs = [jose.parse_compact(r.headers["dpop"], max_length=4096).claims() for r in sent]
    assert ("nonce" in proofs[0], proofs[1]["nonce"]) == (False, "n-1")
    assert proofs[0]["jti"] != proofs[1]["jti"]


def test_a_refresh_asked_for_a_nonce_twice_gives_up():
    nonce = {"error": "use_dpop_nonce", "reason": "use_dpop_nonce"}
    asked = {"status": 400, "json": nonce, "headers": {"DPoP-Nonce": "n-1"}}
    result, sent = refresh([asked, asked])
    assert isinstance(result, KeyproofClientError) and result.code == "use_dpop_nonce"
    assert len(sent) == 2
