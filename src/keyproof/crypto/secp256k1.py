"""secp256k1 signatures: Ethereum ``personal_sign`` (EIP-191) and did:key ECDSA.

Backed by libsecp256k1 (coincurve) and Keccak-256 (safe-pysha3's C Keccak). Policy, checked
here explicitly rather than left to a library default:

- signatures have exactly one length (65 bytes r‖s‖v for EIP-191, 64 bytes r‖s for
  did:key); any other length, or ``v`` outside {0, 1, 27, 28}, is
  ``MalformedSignature``;
- ``r`` and ``s`` must lie in [1, n-1] and ``s`` in the lower half (s <= n/2, BIP 62 /
  EIP-2); anything else is ``SignatureInvalid``: the bytes are well formed, the value
  can never be a signature we accept;
- public keys are canonicalized to the 33-byte compressed SEC1 form.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from coincurve import PublicKey
from sha3 import keccak_256

from keyproof.crypto.encoding import decode_hex0x
from keyproof.errors import InvalidAccount, MalformedSignature, SignatureInvalid

__all__ = [
    "CURVE_ORDER",
    "address_from_public_key",
    "canonical_public_key",
    "checksum_address",
    "decode_signature_hex",
    "eip191_digest",
    "keccak256",
    "recover_digest",
    "recover_eip191",
    "verify_digest",
    "verify_eip191",
    "verify_sha256_ecdsa",
]

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER // 2
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
_RECOVERY_IDS = {0: 0, 1: 1, 27: 0, 28: 1}
_ADDRESS_LENGTH = 20
_EACH_BYTE = int.from_bytes(b"\x01" * 2 * _ADDRESS_LENGTH, "big")
_CHECKSUMS_KEPT = 4096
"""Spellings remembered: a sign-in spells its address at challenge, render and parse."""


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as used by Ethereum (not NIST SHA3-256)."""
    digest: bytes = keccak_256(data).digest()
    return digest


def checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case checksum spelling of a 20-byte address."""
    if len(address) != _ADDRESS_LENGTH:
        raise InvalidAccount("invalid_account", "an address is 20 bytes")
    return _checksum(bytes(address))


@functools.lru_cache(maxsize=_CHECKSUMS_KEPT)
def _checksum(address: bytes) -> str:
    # A hex letter is upper case where the digest's nibble at its position is 8 or more.
    # All 40 characters at once, as ASCII bytes in one integer: a digest hex digit is 8
    # or more when its byte has bit 3 ('8', '9') or bit 6 ('a'-'f') set; an address
    # digit is a letter when its byte has bit 6 set; bit 5 set to 0 upper-cases it.
    lower = address.hex().encode("ascii")
    digest = keccak256(lower).hex().encode("ascii")[:40]
    spelled, nibbles = int.from_bytes(lower, "big"), int.from_bytes(digest, "big")
    high = ((nibbles >> 3) | (nibbles >> 6)) & _EACH_BYTE
    letters = (spelled >> 6) & _EACH_BYTE
    return "0x" + (spelled ^ ((high & letters) << 5)).to_bytes(40, "big").decode("ascii")


def canonical_public_key(key: bytes) -> bytes:
    """Validate a SEC1 public key (02/03, 04 or 06/07 form); return it compressed.

    Refuses wrong lengths, x or y outside the field, points off the curve and hybrid
    keys whose prefix parity disagrees with y, with ``invalid_public_key``.
    """
    parsed = _parse_public_key(key)
    if key[0] in (6, 7) and key[0] & 1 != key[-1] & 1:
        raise InvalidAccount("invalid_public_key", "hybrid key parity does not match")
    compressed: bytes = parsed.format(compressed=True)
    return compressed


def address_from_public_key(public_key: bytes) -> bytes:
    """The 20-byte Ethereum address of any SEC1-encoded public key."""
    point = PublicKey(canonical_public_key(public_key)).format(compressed=False)
    return keccak256(point[1:])[-_ADDRESS_LENGTH:]


def decode_signature_hex(text: str) -> bytes:
    """Decode an EIP-191 signature: ``0x`` + 130 hex digits -> 65 bytes."""
    return decode_hex0x(text, length=65)


def eip191_digest(message: bytes) -> bytes:
    """Keccak-256 of the ``personal_sign`` envelope around ``message``."""
    length = str(len(message)).encode("ascii")
    return keccak256(_EIP191_PREFIX + length + message)


def recover_eip191(message: bytes, signature: bytes) -> bytes:
    """Recover the 20-byte address that signed ``message`` with ``personal_sign``.

    Raises ``MalformedSignature`` for a length other than 65 or ``v`` not in
    {0, 1, 27, 28}; ``SignatureInvalid`` for r/s out of range, high-S, or when no
    key can be recovered.
    """
    return recover_digest(eip191_digest(message), signature)


def recover_digest(digest: bytes, signature: bytes) -> bytes:
    """Recover the 20-byte address whose key made the 65-byte ``signature`` of ``digest``.

    The core of :func:`recover_eip191`, also used for EIP-712 typed-data digests;
    same errors.
    """
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    if len(signature) != 65:
        raise MalformedSignature("malformed_signature", "signature must be 65 bytes")
    recovery_id = _RECOVERY_IDS.get(signature[64])
    if recovery_id is None:
        raise MalformedSignature("malformed_signature", "unsupported recovery id")
    r, s = _split_rs(signature[:64])
    _check_scalars(r, s)
    compact = signature[:64] + bytes([recovery_id])
    try:
        key = PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except ValueError:
        raise SignatureInvalid("signature_invalid", "signature does not verify") from None
    return keccak256(key.format(compressed=False)[1:])[-_ADDRESS_LENGTH:]


def verify_eip191(message: bytes, signature: bytes, address: bytes) -> None:
    """Raise ``SignatureInvalid`` unless ``address`` signed ``message`` (EIP-191)."""
    recovered = recover_eip191(message, signature)
    if not hmac.compare_digest(recovered, address):
        raise SignatureInvalid("signature_invalid", "signature does not verify")


def verify_digest(digest: bytes, r: int, s: int, public_key: bytes) -> None:
    """Verify ECDSA (r, s) over a 32-byte digest; low-S required.

    The one verification core behind every secp256k1 ECDSA format keyproof accepts.
    """
    key = _parse_public_key(public_key)
    _check_scalars(r, s)
    if len(digest) != 32 or not key.verify(_der(r, s), digest, hasher=None):
        raise SignatureInvalid("signature_invalid", "signature does not verify")


def verify_sha256_ecdsa(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Verify a did:key secp256k1 signature: ECDSA over SHA-256, 64 bytes r‖s (P1363)."""
    if len(signature) != 64:
        raise MalformedSignature("malformed_signature", "signature must be 64 bytes")
    r, s = _split_rs(signature)
    verify_digest(hashlib.sha256(message).digest(), r, s, public_key)


def _parse_public_key(key: bytes) -> PublicKey:
    if (
        len(key) not in (33, 65)
        or key[0] not in (2, 3, 4, 6, 7)
        or (len(key) == 33) != (key[0] in (2, 3))
    ):
        raise InvalidAccount("invalid_public_key", "not a SEC1 secp256k1 public key")
    try:
        return PublicKey(key)
    except ValueError:
        raise InvalidAccount("invalid_public_key", "not a point on secp256k1") from None


def _split_rs(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")


def _check_scalars(r: int, s: int) -> None:
    if not (0 < r < CURVE_ORDER and 0 < s <= _HALF_ORDER):
        raise SignatureInvalid("signature_invalid", "signature does not verify")


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
    if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return b"\x02" + bytes([len(body)]) + body


def _der(r: int, s: int) -> bytes:
    body = _der_integer(r) + _der_integer(s)
    return b"\x30" + bytes([len(body)]) + body
