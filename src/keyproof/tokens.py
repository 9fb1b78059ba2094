"""RFC 9068 JWT access tokens: the token profile and its verification (specs/protocol.md §5).

Verification is one strict parse (:func:`keyproof.jose.parse_compact`: canonical
segments, strict JSON with no repeated member names, no ``crit``) feeding the signature
check. It accepts ``alg`` ``Ed25519`` (RFC 9864) or its deprecated name ``EdDSA`` over an
Ed25519 key from the caller's key map, nothing else, and ``typ: at+jwt``; the token
header never chooses the key source (``jku``, ``x5u`` and embedded ``jwk`` are ignored).
``aud`` is the one expected string, and time claims are integers of at most 2^53 - 1, at
most ``MAX_TOKEN_LIFETIME`` apart, checked against an injected clock with a small
leeway. A sender-constrained token carries ``cnf.jkt`` (RFC 9449 §6.1), which the
caller must then check against a DPoP proof (:mod:`keyproof.dpop`). The issuer mints
with :mod:`keyproof.server.minting`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyproof import jose
from keyproof.errors import TokenInvalid

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "DEFAULT_LEEWAY",
    "JWKS_MAX_AGE",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_LIFETIME",
    "MAX_VERIFY_LEEWAY",
    "REQUIRED_CLAIMS",
    "confirmation_jkt",
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
_REQUIRED: Final = frozenset(REQUIRED_CLAIMS)
_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")
"""An RFC 7638 SHA-256 thumbprint in unpadded base64url."""


def _invalid(description: str) -> TokenInvalid:
    return TokenInvalid("token_invalid", description)


def _checked_header(
    header: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]
) -> Ed25519PublicKey:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in jose.ED25519_ALGORITHMS:
        raise _invalid("algorithm not allowed")
    if header.get("typ") != ACCESS_TOKEN_TYPE:
        raise _invalid("not an access token (typ)")
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
    A token with ``cnf.jkt`` is returned like any other: whoever presents it must also
    prove possession of that key (:func:`confirmation_jkt`, :mod:`keyproof.dpop`).
    """
    if not 0 <= leeway <= MAX_VERIFY_LEEWAY:
        raise ValueError(f"leeway must be 0..{MAX_VERIFY_LEEWAY} seconds")
    jws = parse_token(token)
    return verify_parsed(jws, keys=keys, issuer=issuer, audience=audience, now=now, leeway=leeway)


def parse_token(token: str) -> jose.CompactJWS:
    """The one strict parse of a token, not yet verified; ``token_invalid`` if malformed.

    What :func:`verify_parsed` takes: a verifier that picks keys by the header's ``kid``
    (the guard) reads it from here instead of parsing the token twice.
    """
    try:  # refuses a non-string, an empty or too long token first
        return jose.parse_compact(token, max_length=MAX_TOKEN_BYTES)
    except jose.JoseError:
        raise _invalid("malformed token") from None


def verify_parsed(
    jws: jose.CompactJWS,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    issuer: str,
    audience: str,
    now: int,
    leeway: int,
) -> dict[str, Any]:
    """:func:`verify_access_token` after :func:`parse_token`, in the same order of checks;
    ``leeway`` must already be within ``0..MAX_VERIFY_LEEWAY``."""
    try:
        claims = jws.claims()
    except jose.JoseError:
        raise _invalid("malformed token") from None
    key = _checked_header(jws.header, keys)
    try:
        jose.verify_signature(jws, key)
    except jose.JoseError:
        raise _invalid("signature or claims invalid") from None
    if not claims.keys() >= _REQUIRED:
        missing = next(name for name in REQUIRED_CLAIMS if name not in claims)
        raise _invalid(f"claim {missing} is missing")
    if claims["iss"] != issuer:
        raise _invalid("token is from another issuer")
    _check_types(claims, audience)
    _check_times(claims, now, leeway)
    confirmation_jkt(claims)
    return claims


def confirmation_jkt(claims: Mapping[str, Any]) -> str | None:
    """The DPoP key thumbprint a token is bound to (``cnf.jkt``, RFC 9449 §6.1), if any.

    A ``cnf`` that is not exactly ``{"jkt": <thumbprint>}``, or a ``sid`` that is not a
    string, is ``token_invalid``: a confirmation no verifier understands binds nothing.
    """
    if "sid" in claims and not isinstance(claims["sid"], str):
        raise _invalid("sid must be a string")
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    if not isinstance(cnf, dict) or set(cnf) != {"jkt"}:
        raise _invalid("cnf must be {jkt}")
    jkt = cnf["jkt"]
    if not isinstance(jkt, str) or _THUMBPRINT.fullmatch(jkt) is None:
        raise _invalid("cnf.jkt must be a SHA-256 JWK thumbprint")
    return jkt


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
