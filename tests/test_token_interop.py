"""Software nobody here wrote verifies keyproof tokens (RFC 9068, RFC 9864 ``Ed25519``).

A real ``keyproof serve`` issues a bearer and a DPoP-bound token. joserfc verifies them
told ``algorithms=["Ed25519"]`` (its default set is HS256, RS256 and ES256, which holds
no Ed25519 algorithm under either name); authlib's RFC 9068 validator, which calls
joserfc without an algorithm list, once ``Ed25519`` is among joserfc's recommended
algorithms; PyJWT once ``Ed25519`` is registered (README, "The flow, step by step").
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jwt as joserfc_jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from keyproof.testing import KeyproofServer

from conftest import SERVER_LOGS, pyjwt_claims
from wallets import DPoPKey, EthWallet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    with KeyproofServer(tmp_path_factory.mktemp("interop")) as running:
        SERVER_LOGS.append(running.log_path)
        yield running


def sign_in(server: KeyproofServer, key: DPoPKey | None) -> dict[str, Any]:
    wallet = EthWallet.create()
    body = {"account": wallet.caip10(), "scope": "profile:read"}
    message = httpx.post(f"{server.url}/v1/challenge", json=body).json()["message"]
    headers = {}
    if key is not None:
        headers["DPoP"] = key.proof("POST", f"{server.url}/v1/token", now=_now())
    signed = {"message": message, "signature": wallet.sign(message)}
    response = httpx.post(f"{server.url}/v1/token", json=signed, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _now() -> int:
    return int(time.time())  # the server runs on wall time


def jwks(server: KeyproofServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/.well-known/jwks.json").json())


@pytest.fixture(scope="module", params=["bearer", "dpop"])
def issued(request: pytest.FixtureRequest, server: KeyproofServer) -> dict[str, Any]:
    return sign_in(server, DPoPKey() if request.param == "dpop" else None)


class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
    def __init__(self, server: KeyproofServer) -> None:
        super().__init__(issuer=server.url, resource_server=server.url)
        self._jwks = KeySet.import_key_set(jwks(server))

    def get_jwks(self) -> KeySet:
        return self._jwks


def test_authlib_rfc_9068_validator_verifies_keyproof_tokens(
    server: KeyproofServer, issued: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(JWSRegistry, "recommended", [*JWSRegistry.recommended, "Ed25519"])
    validator = Validator(server)
    claims = validator.authenticate_token(issued["access_token"])
    validator.validate_token(claims, scopes=["profile:read"], request=None)
    assert claims["scope"] == "profile:read"
    assert claims.header["typ"] == "at+jwt"
    assert claims.header["alg"] == "Ed25519"


def test_joserfc_verifies_keyproof_tokens(server: KeyproofServer, issued: dict[str, Any]):
    keys = KeySet.import_key_set(jwks(server))
    token = joserfc_jwt.decode(issued["access_token"], keys, algorithms=["Ed25519"])
    registry = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": server.url},
        aud={"essential": True, "value": server.url},
        exp={"essential": True},
    )
    registry.validate(token.claims)
    assert token.header["alg"] == "Ed25519"


def test_joserfc_refuses_a_keyproof_token_signed_by_another_key(
    server: KeyproofServer, issued: dict[str, Any], tmp_path: Path
):
    with KeyproofServer(tmp_path) as other:
        foreign = sign_in(other, None)["access_token"]
    keys = KeySet.import_key_set(jwks(server))
    kid = joserfc_jwt.decode(issued["access_token"], keys, algorithms=["Ed25519"]).header["kid"]
    head, payload, signature = foreign.split(".")
    # The foreign token under this server's kid: the signature is what fails.
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header["kid"] = kid
    forged_head = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    with pytest.raises(BadSignatureError):
        joserfc_jwt.decode(f"{forged_head}.{payload}.{signature}", keys, algorithms=["Ed25519"])


def test_pyjwt_verifies_keyproof_tokens_once_ed25519_is_registered(
    server: KeyproofServer, issued: dict[str, Any]
):
    metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    claims = pyjwt_claims(
        issued["access_token"], metadata["jwks_uri"], audience=server.url, issuer=server.url
    )
    assert claims["scope"] == "profile:read"
    if issued["token_type"] == "DPoP":
        assert set(claims["cnf"]) == {"jkt"}
