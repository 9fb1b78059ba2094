"""RFC 9068 JWT access tokens: the token profile and its verification (specs/protocol.md §5).

Verification pins ``EdDSA`` and ``typ: at+jwt``; the token header never chooses the
key source (``jku``, ``x5u`` and embedded ``jwk`` are ignored: keys come from the
caller's key map only) and any ``crit`` header is refused. Time claims are checked
against an injected clock with a small leeway. The issuer mints with
:mod:`keyproof.server.minting`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyproof.crypto.encoding import parse_base64url
from keyproof.errors import TokenInvalid

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "DEFAULT_LEEWAY",
    "JWKS_MAX_AGE",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_LIFETIME",
    "MAX_VERIFY_LEEWAY",
    "REQUIRED_CLAIMS",
    "verify_access_token",
]

ACCESS_TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_BYTES: Final = 8192
MAX_TOKEN_LIFETIME: Final = 3600
"""The hard cap on any access token's lifetime, in seconds."""
DEFAULT_LEEWAY: Final = 30
"""Seconds of clock difference every keyproof verifier allows on ``exp`` by default."""
MAX_VERIFY_LEEWAY: Final = 60
"""The largest leeway any keyproof verifier accepts; key retirement relies on it."""
JWKS_MAX_AGE: Final = 300
"""Seconds a verifier may cache the JWKS (its ``Cache-Control: max-age``)."""
REQUIRED_CLAIMS: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id")


def _invalid(description: str) -> TokenInvalid:
    return TokenInvalid("token_invalid", description)


def _check_compact(token: str) -> None:
    """Three canonical unpadded base64url segments (RFC 7515 §2, §7.1), nothing else.

    PyJWT's decoder tolerates ``=`` padding and non-canonical trailing bits, which would
    let one signed token be spelled several ways.
    """
    segments = token.split(".")
    if len(segments) != 3:
        raise _invalid("malformed token")
    for segment in segments:
        if not segment or parse_base64url(segment, max_length=MAX_TOKEN_BYTES) is None:
            raise _invalid("malformed token")


def _checked_header(token: str, keys: Mapping[str, Ed25519PublicKey]) -> Ed25519PublicKey:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("malformed token") from None
    if header.get("alg") != "EdDSA":
        raise _invalid("algorithm not allowed")
    if header.get("typ") != ACCESS_TOKEN_TYPE:
        raise _invalid("not an access token (typ)")
    if "crit" in header:
        raise _invalid("critical header parameters are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise _invalid("unknown key id")
    return keys[kid]


def verify_access_token(
    token: str,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    issuer: str,
    audience: str,
    now: int,
    leeway: int = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify signature and every claim; return the claims or raise ``TokenInvalid``.

    ``leeway`` is capped at ``MAX_VERIFY_LEEWAY``: key retirement relies on that bound.
    """
    if not 0 <= leeway <= MAX_VERIFY_LEEWAY:
        raise ValueError(f"leeway must be 0..{MAX_VERIFY_LEEWAY} seconds")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_BYTES:
        raise _invalid("malformed token")
    _check_compact(token)
    key = _checked_header(token, keys)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            # exp/nbf/iat are checked below against the injected clock, not wall time.
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise _invalid("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise _invalid("token is from another issuer") from None
    except jwt.PyJWTError:
        raise _invalid("signature or claims invalid") from None
    _check_times(claims, now, leeway)
    _check_types(claims)
    return claims


def _check_times(claims: Mapping[str, Any], now: int, leeway: int) -> None:
    for name in ("exp", "nbf", "iat"):
        if not isinstance(claims[name], int) or isinstance(claims[name], bool):
            raise _invalid(f"{name} must be an integer")
    if now >= claims["exp"] + leeway:
        raise TokenInvalid("token_expired", "token expired")
    if now + leeway < claims["nbf"] or now + leeway < claims["iat"]:
        raise _invalid("token not yet valid")


def _check_types(claims: Mapping[str, Any]) -> None:
    for name in ("sub", "scope", "client_id", "jti"):
        if not isinstance(claims[name], str):
            raise _invalid(f"{name} must be a string")
