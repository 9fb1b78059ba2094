"""The benchmarks' minimal login app does the work it is measured for, on a real server.

``benchmarks.minimal_login`` is the floor keyproof's HTTP logins are compared with; a
floor that skipped its work (a signature not checked, a nonce not consumed) would make
that comparison meaningless. Each store gets one uvicorn server on 127.0.0.1 and a free
port, run as the benchmark runs it; Redis skips when unreachable (fails when
``KEYPROOF_REQUIRE_REDIS=1``), with its own key prefix deleted afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from benchmarks import servers
from jwt.algorithms import OKPAlgorithm
from nacl.signing import SigningKey

from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base64url


def _serve(store_url: str, server_log: list[Path]) -> Iterator[httpx.Client]:
    env = {"KEYPROOF_BENCH_STORE": store_url}
    with servers.app("app", 1, env, module="benchmarks.minimal_login") as server:
        server_log.append(server.log_path)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
        log = server.log()
    assert "Traceback" not in log, log


@pytest.fixture
def sqlite_app(tmp_path: Path, server_log: list[Path]) -> Iterator[httpx.Client]:
    yield from _serve(f"sqlite:///{tmp_path}/nonces.db", server_log)


@pytest.fixture
def redis_app(
    tmp_path: Path, redis_url: str, redis_prefix: str, server_log: list[Path]
) -> Iterator[httpx.Client]:
    yield from _serve(f"{redis_url}?prefix={redis_prefix}", server_log)


def _wallet() -> tuple[SigningKey, str]:
    key = SigningKey.generate()
    return key, encode_did_key("ed25519", bytes(key.verify_key))


def _challenge(client: httpx.Client, account: str) -> str:
    answer = client.post("/v1/challenge", json={"account": account})
    assert answer.status_code == 201, answer.text
    message = str(answer.json()["message"])
    assert message.split("\n")[1] == account
    assert f"Nonce: {answer.json()['nonce']}" in message.split("\n")
    return message


def _redeem(client: httpx.Client, message: str, key: SigningKey) -> httpx.Response:
    signature = encode_base64url(key.sign(message.encode()).signature)
    return client.post("/v1/token", json={"message": message, "signature": signature})


def _claims(client: httpx.Client, token: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):  # registered once per process
        jwt.register_algorithm("Ed25519", OKPAlgorithm())
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwk = next(k for k in client.get("/.well-known/jwks.json").json()["keys"])
    assert header["kid"] == jwk["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        OKPAlgorithm.from_jwk(jwk),
        algorithms=["Ed25519"],
        audience="http://127.0.0.1",
        issuer="http://127.0.0.1",
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti", "scope"]},
    )
    return claims


def _logs_in_once_and_refuses_the_rest(client: httpx.Client) -> None:
    key, account = _wallet()

    # A correct login: a token whose signature verifies against the app's key.
    message = _challenge(client, account)
    answer = _redeem(client, message, key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert _claims(client, body["access_token"])["sub"] == account

    # The same signed message again: its nonce is consumed.
    assert _redeem(client, message, key).status_code == 401

    # A bad signature is refused and leaves the nonce for the right one.
    message = _challenge(client, account)
    assert _redeem(client, message, SigningKey.generate()).status_code == 401
    assert _redeem(client, message, key).status_code == 200

    # A nonce issued to one account is refused to another, even correctly signed.
    other_key, other = _wallet()
    message = _challenge(client, account)
    stolen = message.replace(account, other)
    assert _redeem(client, stolen, other_key).status_code == 401


def test_minimal_login_on_sqlite(sqlite_app: httpx.Client):
    _logs_in_once_and_refuses_the_rest(sqlite_app)


@pytest.mark.redis
def test_minimal_login_on_redis(redis_app: httpx.Client):
    _logs_in_once_and_refuses_the_rest(redis_app)
