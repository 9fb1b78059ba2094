"""DPoP proofs (RFC 9449): the checks a proof must pass wherever keyproof receives one.

A proof is a compact JWS whose header carries ``typ: dpop+jwt``, an asymmetric ``alg``
(``ES256``, ``Ed25519`` or ``EdDSA``) and the public ``jwk`` that signed it; its claims
say which request it is for. :func:`verify_proof` checks, in the order of RFC 9449 §4.3:

    one well-formed JWS -> typ -> alg allowed for the jwk, no private key -> signature
    -> jti, htm, htu, iat present and typed -> htm is the request method -> htu is the
    request URI (query and fragment ignored, RFC 3986 §6.2.2-6.2.3 normalized) -> iat
    within the window -> ath is the hash of the presented token (when one is presented)
    -> the key is the one the token or sign-in is bound to (``cnf.jkt``)

and returns what the caller still has to check against state it keeps: the ``jti`` is
used once (:class:`ProofReplayCache`, kept in a store so it holds across replicas) and,
where the server hands out nonces, the ``nonce``. :func:`check_sender` is what a
resource server does with a presented token and its proof. Every refusal is
``invalid_dpop_proof`` with a fixed description; nothing in the proof picks how it is
verified.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from keyproof import jose
from keyproof.crypto.encoding import encode_base64url
from keyproof.errors import DPoPProofInvalid, TokenInvalid
from keyproof.stores.base import Kind, Store
from keyproof.tokens import confirmation_jkt

__all__ = [
    "DPOP_ALGORITHMS",
    "DPOP_TYPE",
    "JKT_URI_PREFIX",
    "MAX_PROOF_BYTES",
    "DPoPProof",
    "ProofReplayCache",
    "access_token_hash",
    "check_sender",
    "named_jkts",
    "normalized_htu",
    "verify_proof",
]

DPOP_TYPE: Final = "dpop+jwt"
JKT_URI_PREFIX: Final = "urn:ietf:params:oauth:jwk-thumbprint:sha-256:"
"""RFC 9278: the resource line naming the DPoP key a sign-in is bound to."""
DPOP_ALGORITHMS: Final = ("ES256", "Ed25519", "EdDSA")
"""What ``dpop_signing_alg_values_supported`` advertises: WebCrypto's ES256 and Ed25519."""
MAX_PROOF_BYTES: Final = 4096
MAX_AGE: Final = 120
"""Seconds a proof's ``iat`` may lie in the past."""
MAX_FUTURE: Final = 60
"""Seconds a proof's ``iat`` may lie in the future (clock skew)."""
_JTI: Final = re.compile(r"[!-~]{16,256}", re.ASCII)
_METHOD: Final = re.compile(r"[A-Z]{1,16}", re.ASCII)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A proof that passed every stateless check."""

    jkt: str
    """RFC 7638 thumbprint of the key that signed it."""
    jti: str
    iat: int
    nonce: str | None


def _invalid(description: str = "invalid DPoP proof") -> DPoPProofInvalid:
    return DPoPProofInvalid("invalid_dpop_proof", description)


def verify_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    now: int,
    access_token: str | None,
    jkt: str | None,
) -> DPoPProof:
    """Check ``proof`` for a ``method`` request to ``url`` at ``now``.

    ``access_token`` is the token presented with the request (``None`` at the token
    endpoint, where the proof asks for one); ``jkt`` the thumbprint the token or the
    signed sign-in message is bound to (``None`` when nothing is bound yet).
    """
    jws, key = _signed_by_its_jwk(proof)
    claims = _claims(jws)
    if claims["htm"] != method:
        raise _invalid("the proof is for another method")
    target = normalized_htu(url)
    if not target:
        raise _invalid("the request URI is not an absolute http(s) URI without user info")
    if normalized_htu(claims["htu"]) != target:
        raise _invalid("the proof is for another URI")
    if not now - MAX_AGE <= claims["iat"] <= now + MAX_FUTURE:
        raise _invalid("the proof is too old or from the future")
    _check_ath(claims.get("ath"), access_token)
    thumbprint = jose.jwk_thumbprint(key)
    if jkt is not None and thumbprint != jkt:
        raise _invalid("the proof is signed by another key")
    return DPoPProof(thumbprint, claims["jti"], claims["iat"], claims.get("nonce"))


def _signed_by_its_jwk(proof: str | None) -> tuple[jose.CompactJWS, jose.PublicKey]:
    if proof is None:
        raise _invalid("a DPoP proof is required")
    try:
        jws = jose.parse_compact(proof, max_length=MAX_PROOF_BYTES)
        if jws.header.get("typ") != DPOP_TYPE:
            raise jose.JoseError("typ must be dpop+jwt")
        key = jose.public_key_from_jwk(jws.header.get("jwk"))
        jose.verify_signature(jws, key)
    except jose.JoseError:
        raise _invalid() from None
    return jws, key


def _claims(jws: jose.CompactJWS) -> dict[str, Any]:
    try:
        claims = jws.claims()
    except jose.JoseError:
        raise _invalid() from None
    checks = (
        isinstance(claims.get("jti"), str) and _JTI.fullmatch(claims["jti"]),
        isinstance(claims.get("htm"), str) and _METHOD.fullmatch(claims["htm"]),
        isinstance(claims.get("htu"), str) and len(claims["htu"]) <= 2048,
        type(claims.get("iat")) is int,
        claims.get("nonce") is None or isinstance(claims["nonce"], str),
        claims.get("ath") is None or isinstance(claims["ath"], str),
    )
    if not all(checks):
        raise _invalid("the proof lacks jti, htm, htu or iat, or mistypes them")
    return claims


def _check_ath(ath: str | None, access_token: str | None) -> None:
    if access_token is None:
        if ath is not None:
            raise _invalid("ath without an access token")
        return
    if ath != access_token_hash(access_token):
        raise _invalid("the proof is for another access token")


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    return encode_base64url(hashlib.sha256(access_token.encode("ascii")).digest())


def normalized_htu(uri: str) -> str:
    """Scheme, host and path of ``uri``, normalized; the query and fragment dropped.

    Case of scheme and host folded, default port dropped, an empty path is ``/``
    (RFC 3986 §6.2.2, §6.2.3). Anything unparseable, any other scheme and any user info
    normalize to ``""``, which :func:`verify_proof` refuses as a request URI, so it never
    matches.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path or '/'}"


class ProofReplayCache:
    """Each proof's ``jti`` is accepted once while its ``iat`` is in the window.

    Keyed by the proof key's thumbprint and the ``jti``, so one client cannot burn
    another's ids; entries expire with the window, so the store stays bounded.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def use(self, proof: DPoPProof, now: int) -> None:
        """Record ``proof`` as used; ``invalid_dpop_proof`` if it was used before."""
        key = hashlib.sha256(f"{proof.jkt}\n{proof.jti}".encode()).hexdigest()
        # Accepted while iat >= now - MAX_AGE; the margin covers replicas' clock skew.
        ttl = proof.iat + MAX_AGE + MAX_FUTURE - now
        if not await self._store.add(Kind.DPOP_PROOF, key, b"1", ttl):
            raise _invalid("the proof was already used")


async def check_sender(
    claims: Mapping[str, Any],
    *,
    scheme: str,
    token: str,
    proof: str | None,
    method: str,
    url: str,
    now: int,
    replay: ProofReplayCache,
) -> None:
    """A verified token is presented the way its binding requires (RFC 9449 §7).

    A token bound by ``cnf.jkt`` comes with the ``DPoP`` scheme and a fresh proof of that
    key for this request (``ath`` its hash, ``jti`` never seen before); a token without
    a binding comes with the ``Bearer`` scheme. Otherwise ``token_invalid`` (the wrong
    scheme) or ``invalid_dpop_proof``.
    """
    jkt = confirmation_jkt(claims)
    if jkt is None:
        if scheme != "Bearer":
            raise TokenInvalid("token_invalid", "a bearer token sent with the DPoP scheme")
        return
    if scheme != "DPoP":
        raise TokenInvalid("token_invalid", "a DPoP-bound token sent as a bearer token")
    checked = verify_proof(proof, method=method, url=url, now=now, access_token=token, jkt=jkt)
    await replay.use(checked, now)


def named_jkts(resources: Iterable[str]) -> list[str]:
    """The DPoP key thumbprints a signed message names as RFC 9278 resources, in order."""
    return [r[len(JKT_URI_PREFIX) :] for r in resources if r.startswith(JKT_URI_PREFIX)]
