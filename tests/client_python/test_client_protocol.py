"""An issuer that answers outside the protocol: the sign-in flow, fed answers by hand.

``SignIn.flow`` does no I/O: it yields requests and is sent answers, so what a broken
or hostile issuer could answer is given to it directly, around a real challenge text.
"""

from __future__ import annotations

import httpx
import pytest
from keyproof_client import KeyproofClientError, generate_key
from keyproof_client._signin import SignIn

from .conftest import Services

GOOD_TOKEN = {"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 600, "scope": ""}


def answer(request: httpx.Request, status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=request, **kwargs)


def run(services: Services, token_answer: dict) -> KeyproofClientError | object:
    """Sign in against the real issuer's challenge, then hand the flow ``token_answer``."""
    key = generate_key("ed25519")
    target = SignIn.build(services.issuer, key, scope=None, audience=None, domain=None, chain=None)
    flow = target.flow(clock=lambda: 1000.0, extensions={})
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
