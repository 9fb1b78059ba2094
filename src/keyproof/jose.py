"""Compact JWS (RFC 7515) as keyproof uses it: one strict parse, Ed25519 and ES256, JWKs.

One parse feeds every JWS keyproof reads (access tokens, DPoP proofs), and refuses:

- anything but three canonical, unpadded base64url segments (RFC 7515 §7.1), so one
  signed value has one spelling;
- a header or payload that is not a UTF-8 JSON object under :mod:`keyproof._json`'s
  rules: no repeated member name (RFC 7515 §4: the JOSE header must not; two verifiers
  could read the last or the first one), no ``NaN``/``Infinity``, bounded nesting;
- a ``crit`` header (no extension is understood, RFC 7515 §4.1.11).

Algorithms are the verifier's choice, never the header's: :func:`verify_signature`
takes the key and checks that the header's ``alg`` is one that key type allows —
``Ed25519`` (RFC 9864) or its deprecated name ``EdDSA`` for an Ed25519 key, ``ES256``
for a P-256 key — and nothing else (no ``none``, nothing symmetric). JWKs are public
keys only: a member ``d`` is refused. Thumbprints follow RFC 7638.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import SigningKey as NaclSigningKey

from keyproof._json import dumps_compact, loads_strict
from keyproof.crypto import ed25519
from keyproof.crypto.encoding import (
    encode_base64url,
    parse_base64url,
    parse_base64url_segments,
)
from keyproof.errors import InvalidAccount, SignatureInvalid

__all__ = [
    "ED25519_ALGORITHMS",
    "CompactJWS",
    "JoseError",
    "PublicKey",
    "jwk_thumbprint",
    "parse_compact",
    "public_jwk",
    "public_key_from_jwk",
    "sign_compact",
    "verify_signature",
]

ED25519_ALGORITHMS: Final = frozenset({"Ed25519", "EdDSA"})
"""RFC 9864's name for Ed25519 signatures, and the deprecated name verifiers still accept."""
_ES256_LENGTH: Final = 64
_HEADERS_KEPT: Final = 64
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


class JoseError(ValueError):
    """A JWS or JWK keyproof does not accept; callers turn it into their own error code."""


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A parsed, not yet verified, compact JWS."""

    header: Mapping[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object, under the same rules as the header."""
        return _json_object(self.payload, "payload")


def parse_compact(text: str, *, max_length: int) -> CompactJWS:
    """Split and decode ``header.payload.signature``; raise :class:`JoseError`."""
    if not isinstance(text, str) or not 0 < len(text) <= max_length or not text.isascii():
        raise JoseError("malformed JWS")
    segments = text.split(".")
    if len(segments) != 3 or not all(segments):
        raise JoseError("a compact JWS has three segments")
    decoded = parse_base64url_segments(text)  # each within max_length
    if decoded is None:
        raise JoseError("segments must be canonical unpadded base64url")
    payload, signature = decoded
    header = _header(segments[0])
    if "crit" in header:
        raise JoseError("critical header parameters are not supported")
    signing_input = text[: len(segments[0]) + 1 + len(segments[1])].encode("ascii")
    return CompactJWS(header, payload, signing_input, signature)


def verify_signature(jws: CompactJWS, key: PublicKey) -> None:
    """Raise :class:`JoseError` unless ``key`` made ``jws`` with an algorithm it allows."""
    alg = jws.header.get("alg")
    if not isinstance(alg, str):  # an object or array would not even hash
        raise JoseError("alg must be a string")
    if isinstance(key, Ed25519PublicKey) and alg in ED25519_ALGORITHMS:
        _verify_ed25519(key, jws.signature, jws.signing_input)
    elif isinstance(key, ec.EllipticCurvePublicKey) and alg == "ES256":
        _verify_es256(key, jws.signature, jws.signing_input)
    else:
        raise JoseError("algorithm not allowed for this key")


def sign_compact(header: Mapping[str, Any], payload: Mapping[str, Any], key: Any) -> str:
    """A compact JWS of compact JSON, signed with an Ed25519 private key (alg ``Ed25519``)
    or a P-256 one (alg ``ES256``, RFC 7518 §3.4: ``R ‖ S``, as WebCrypto signs).

    An Ed25519 key may also be a pynacl ``SigningKey``: libsodium signs faster than
    OpenSSL, and Ed25519 signatures are deterministic, so the bytes are the same.
    """
    alg = header.get("alg")
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    data = signing_input.encode("ascii")
    if isinstance(key, Ed25519PrivateKey) and alg == "Ed25519":
        signature = key.sign(data)
    elif isinstance(key, NaclSigningKey) and alg == "Ed25519":
        signature = key.sign(data).signature
    elif _is_p256(key) and alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise ValueError("keyproof signs with Ed25519 (alg Ed25519) or P-256 (alg ES256) only")
    return f"{signing_input}.{encode_base64url(signature)}"


def _is_p256(key: Any) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)


def public_key_from_jwk(jwk: Any) -> PublicKey:
    """The public key of an ``OKP``/``Ed25519`` or ``EC``/``P-256`` JWK; raise otherwise."""
    if not isinstance(jwk, Mapping) or "d" in jwk:
        raise JoseError("a JWK here is a public key object")
    kind = (jwk.get("kty"), jwk.get("crv"))
    if kind == ("OKP", "Ed25519"):
        raw = _coordinate(jwk.get("x"))
        try:  # small-order and non-canonical points prove possession of nothing
            ed25519.check_public_key(raw)
        except InvalidAccount:
            raise JoseError("not an acceptable Ed25519 public key") from None
        return Ed25519PublicKey.from_public_bytes(raw)
    if kind == ("EC", "P-256"):
        point = b"\x04" + _coordinate(jwk.get("x")) + _coordinate(jwk.get("y"))
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError:
            raise JoseError("the JWK is not a point on P-256") from None
    raise JoseError("only Ed25519 and P-256 keys are accepted")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7517 members that define ``key`` (what a thumbprint covers)."""
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": encode_base64url(raw)}
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    x, y = point[1:33], point[33:]
    return {"crv": "P-256", "kty": "EC", "x": encode_base64url(x), "y": encode_base64url(y)}


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, base64url."""
    # public_jwk lists the members in lexicographic order already.
    canonical = dumps_compact(public_jwk(key))
    return encode_base64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _segment(value: Mapping[str, Any]) -> str:
    return encode_base64url(dumps_compact(value).encode("utf-8"))


def _coordinate(value: Any) -> bytes:
    raw = parse_base64url(value, max_length=32) if isinstance(value, str) else None
    if raw is None or len(raw) != 32:
        raise JoseError("a key coordinate is 32 bytes of canonical base64url")
    return raw


def _header(segment: str) -> Mapping[str, Any]:
    kept = _kept_header(segment)
    return _json_object(kept, "header") if isinstance(kept, bytes) else kept


@functools.lru_cache(maxsize=_HEADERS_KEPT)
def _kept_header(segment: str) -> Mapping[str, Any] | bytes:
    """A header without nested values, read-only; the last few are kept, as every token
    one issuer key signs carries the same header. The decoded bytes of one that may
    nest: each caller parses its own copy of that. A refused header raises and is not
    kept."""
    data = parse_base64url(segment, max_length=len(segment))
    if data is None:
        raise JoseError("segments must be canonical unpadded base64url")
    if b"{" in data[1:] or b"[" in data:
        return data
    return MappingProxyType(_json_object(data, "header"))


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads_strict(data)
    except ValueError:  # not UTF-8, repeated members, NaN, nested too deeply
        raise JoseError(f"the {what} is not strict UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise JoseError(f"the {what} is not a JSON object")
    return value


def _verify_ed25519(key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    """libsodium's check (:mod:`keyproof.crypto.ed25519`): twice as fast as OpenSSL's here,
    and it also refuses a small-order R and a small-order or non-canonical key."""
    try:
        ed25519.verify_signature(data, signature, key.public_bytes_raw())
    except SignatureInvalid:
        raise JoseError("signature does not verify") from None


def _verify_es256(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """RFC 7518 §3.4: R ‖ S, 32 bytes each, both in [1, n-1]."""
    if len(signature) != _ES256_LENGTH:
        raise JoseError("an ES256 signature is 64 bytes")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        raise JoseError("signature does not verify")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JoseError("signature does not verify") from None
