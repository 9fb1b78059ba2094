"""End to end with short-lived tokens: the client refreshes before the issuer's ``exp``.

The one client test on the wall clock: keyproof issues 10-second tokens (its smallest
``token_ttl``), the client renews at half their life by refreshing its DPoP session
(one sign-in for three tokens), and every token the resource server saw was still
within its ``exp`` when the answer came back. Bounded to 25 s (about 11 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from keyproof_client import KeyproofAuth, generate_key

from keyproof.crypto.encoding import parse_base64url

from .conftest import Services, Traffic, running_services

TOKEN_TTL = 10
TOKENS = 3
DEADLINE = 25.0


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("short"), token_ttl=TOKEN_TTL) as running:
        yield running


def expiry(authorization: str) -> int:
    payload = parse_base64url(authorization.split()[1].split(".")[1], max_length=8192)
    assert payload is not None
    return int(json.loads(payload)["exp"])


def test_short_lived_tokens_are_refreshed_before_they_expire(short_lived: Services):
    auth = KeyproofAuth(short_lived.issuer, generate_key("ed25519"), scope="profile:read")
    seen: list[tuple[float, str, int]] = []  # (answered at, Authorization, status)
    traffic = Traffic()

    def record(response: httpx.Response) -> None:
        traffic.record(response)
        if response.request.url.path == "/me":
            answered = time.time()
            seen.append((answered, response.request.headers["authorization"], response.status_code))

    started = time.monotonic()
    with httpx.Client(auth=auth, event_hooks={"response": [record]}, timeout=10) as client:
        tokens: set[str] = set()
        while len(tokens) < TOKENS and time.monotonic() - started < DEADLINE:
            client.get(short_lived.me)
            tokens.add(seen[-1][1])
            time.sleep(0.2)
    assert len(tokens) == TOKENS, f"{len(tokens)} tokens in {DEADLINE} s"
    assert [status for _, _, status in seen] == [200] * len(seen)  # no 401, no retry
    assert all(answered < expiry(authorization) for answered, authorization, _ in seen)
    assert {authorization.split()[0] for authorization in tokens} == {"DPoP"}
    assert (traffic.sign_ins, traffic.refreshes) == (1, TOKENS - 1)
