"""Ed25519 client signatures (RFC 8032), verified by libsodium through pynacl.

Public keys are checked when an account is parsed and again before every verification
(the libsodium point check's answer is remembered for the last few thousand keys).
:func:`check_public_key` refuses, with ``invalid_public_key``:

- any length other than 32 bytes;
- a non-canonical encoding: the y coordinate (the low 255 bits) is >= p = 2^255 - 19;
- bytes that do not decode to a point on the curve;
- the eight small-order points (which include both x = 0 encodings);
- points outside the prime-order subgroup (a torsion component: "mixed order").

The last four come from libsodium's ``crypto_core_ed25519_is_valid_point``; the
y >= p check is repeated here so the policy does not hinge on one library call.
Signature verification (libsodium ``crypto_sign_verify_detached``) additionally
refuses a non-canonical S (S >= L) and a small-order R, and checks the cofactorless
equation [S]B = R + [k]A.
"""

from __future__ import annotations

import functools

from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import CryptoError

from keyproof.errors import InvalidAccount, MalformedSignature, SignatureInvalid

__all__ = ["PUBLIC_KEY_LENGTH", "SIGNATURE_LENGTH", "check_public_key", "verify"]

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
_P = 2**255 - 19
_Y_MASK = (1 << 255) - 1
_CHECKED_KEYS = 4096
"""How many keys' point checks are remembered (a subgroup check costs about as much as a
signature check, and a sign-in meets the same key at challenge, parse and verify)."""


def check_public_key(key: bytes) -> bytes:
    """Return ``key`` if it is an acceptable Ed25519 public key; see the module doc."""
    if len(key) != PUBLIC_KEY_LENGTH:
        raise InvalidAccount("invalid_public_key", "an ed25519 public key is 32 bytes")
    if int.from_bytes(key, "little") & _Y_MASK >= _P:
        raise InvalidAccount("invalid_public_key", "non-canonical ed25519 public key")
    if not _is_valid_point(bytes(key)):
        raise InvalidAccount("invalid_public_key", "ed25519 public key is not a valid point")
    return key


@functools.lru_cache(maxsize=_CHECKED_KEYS)
def _is_valid_point(key: bytes) -> bool:
    return bool(crypto_core_ed25519_is_valid_point(key))


def verify(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Raise unless ``signature`` is a valid Ed25519 signature of ``message``.

    ``MalformedSignature`` for a signature that is not 64 bytes, ``InvalidAccount``
    for a key :func:`check_public_key` refuses, ``SignatureInvalid`` otherwise.
    """
    if len(signature) != SIGNATURE_LENGTH:
        raise MalformedSignature("malformed_signature", "signature must be 64 bytes")
    verify_signature(message, signature, check_public_key(public_key))


def verify_signature(message: bytes, signature: bytes, public_key: bytes) -> None:
    """libsodium's verification alone: ``SignatureInvalid`` unless it accepts.

    For keys whose policy the caller has settled (the issuer's own, from its JWKS); any
    length but 64-byte signatures and 32-byte keys is ``SignatureInvalid`` too.
    """
    if len(signature) != SIGNATURE_LENGTH or len(public_key) != PUBLIC_KEY_LENGTH:
        raise SignatureInvalid("signature_invalid", "signature does not verify")
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except CryptoError:
        raise SignatureInvalid("signature_invalid", "signature does not verify") from None
