"""Minting RFC 9068 access tokens with the issuer's current signing key (specs/protocol.md §5)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from keyproof.server.keys import KeySet
from keyproof.tokens import ACCESS_TOKEN_TYPE

__all__ = ["AccessToken", "mint_access_token"]


@dataclass(frozen=True)
class AccessToken:
    """A minted token and the claims it carries."""

    token: str
    claims: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"AccessToken(jti={self.claims.get('jti')!r}, sub={self.claims.get('sub')!r})"

    @property
    def scope(self) -> str:
        return str(self.claims["scope"])

    @property
    def expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])


def mint_access_token(
    keys: KeySet,
    *,
    issuer: str,
    subject: str,
    audience: str,
    scope: str,
    client_id: str,
    lifetime: int,
    now: int,
) -> AccessToken:
    """Sign an access token with the current signing key."""
    key = keys.signing_key()
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(16),
        "scope": scope,
        "client_id": client_id,
    }
    headers = {"typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
    token = jwt.encode(claims, key.private, algorithm="EdDSA", headers=headers)
    return AccessToken(token, claims)
