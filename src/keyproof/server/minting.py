"""Minting RFC 9068 access tokens with the issuer's current signing key (specs/protocol.md §5)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyproof.jose import sign_compact
from keyproof.server.keys import KeySet
from keyproof.tokens import ACCESS_TOKEN_TYPE

__all__ = ["AccessToken", "mint_access_token"]


@dataclass(frozen=True)
class AccessToken:
    """A minted token and the claims it carries, with the refresh token that comes with
    it when it opens or continues a DPoP-bound session."""

    token: str
    claims: Mapping[str, Any]
    refresh_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"AccessToken(jti={self.claims.get('jti')!r}, sub={self.claims.get('sub')!r})"

    @property
    def scope(self) -> str:
        return str(self.claims["scope"])

    @property
    def token_type(self) -> str:
        """``DPoP`` for a token bound to a DPoP key, else ``Bearer`` (RFC 9449 §5)."""
        return "DPoP" if "cnf" in self.claims else "Bearer"

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
    jkt: str | None = None,
    sid: str | None = None,
) -> AccessToken:
    """Sign an access token with the current signing key (header ``alg: Ed25519``, RFC 9864).

    ``jkt`` binds it to a DPoP key (``cnf.jkt``, RFC 9449 §6.1); ``sid`` names the
    refresh session it belongs to, so that ending the session deactivates it.
    """
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
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    if sid is not None:
        claims["sid"] = sid
    header = {"alg": "Ed25519", "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
    token = sign_compact(header, claims, key.signer)
    return AccessToken(token, claims)
