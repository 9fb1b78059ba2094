"""RFC 9068 JWT access tokens: the token profile and its verification (specs/protocol.md §5).

Verification pins ``EdDSA`` and ``typ: at+jwt``; the token header never chooses the
key source (``jku``, ``x5u`` and embedded ``jwk`` are ignored: keys come from the
caller's key map only) and any ``crit`` header is refused. Header and payload are
strict JSON (no repeated member names), ``aud`` is the one expected string, and time
claims are integers of at most 2^53 - 1, at most ``MAX_TOKEN_LIFETIME`` apart, checked
against an injected clock with a small leeway. The issuer mints with
:mod:`keyproof.server.minting`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyproof._json import loads_strict
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
MAX_TIMESTAMP: Final = 2**53 - 1
"""The largest time a token may carry: the largest integer every JSON reader keeps exactly
(RFC 7493 §2.2)."""
REQUIRED_CLAIMS: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id")


def _invalid(description: str) -> TokenInvalid:
    return TokenInvalid("token_invalid", description)


def _decoded_header(token: str) -> dict[str, Any]:
    """The header of three canonical unpadded base64url segments (RFC 7515 §2, §7.1)
    whose header and payload are strict JSON objects; nothing else.

    PyJWT's decoder tolerates ``=`` padding and non-canonical trailing bits, which would
    let one signed token be spelled several ways, and keeps the last of repeated member
    names, where another verifier may keep the first.
    """
    segments = token.split(".")
    if len(segments) != 3:
        raise _invalid("malformed token")
    parts: list[bytes] = []
    for segment in segments:
        data = parse_base64url(segment, max_length=MAX_TOKEN_BYTES) if segment else None
        if data is None:
            raise _invalid("malformed token")
        parts.append(data)
    _json_object(parts[1])  # PyJWT reads the payload again once it is known unambiguous
    return _json_object(parts[0])


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = loads_strict(data)
    except ValueError:
        raise _invalid("malformed token") from None
    if not isinstance(value, dict):
        raise _invalid("malformed token")
    return value


def _checked_header(
    header: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]
) -> Ed25519PublicKey:
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
    key = _checked_header(_decoded_header(token), keys)
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
    _check_types(claims, audience)
    return claims


def _check_times(claims: Mapping[str, Any], now: int, leeway: int) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(f"{name} must be an integer")
        if not 0 <= value <= MAX_TIMESTAMP:
            raise _invalid(f"{name} is out of range")
    if now >= claims["exp"] + leeway:
        raise TokenInvalid("token_expired", "token expired")
    if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME:  # key retirement relies on it
        raise _invalid("token lifetime exceeds the hard cap")
    if now + leeway < claims["nbf"] or now + leeway < claims["iat"]:
        raise _invalid("token not yet valid")


def _check_types(claims: Mapping[str, Any], audience: str) -> None:
    for name in ("sub", "scope", "client_id", "jti"):
        if not isinstance(claims[name], str):
            raise _invalid(f"{name} must be a string")
    # RFC 7519 allows an array; keyproof mints one audience, so anything else is not ours.
    if claims["aud"] != audience:
        raise _invalid("token is for another audience")
