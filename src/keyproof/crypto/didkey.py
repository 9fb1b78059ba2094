"""``did:key`` identifiers for agent keys (W3C CCG did:key method, multibase base58btc).

``did:key:z`` + base58btc(multicodec varint ‖ public key), for two key types:

=========  ==================  ==========  ===================
kind       multicodec          key bytes   DID starts with
=========  ==================  ==========  ===================
ed25519    ed25519-pub 0xed    32          ``did:key:z6Mk``
secp256k1  secp256k1-pub 0xe7  33 (SEC1    ``did:key:zQ3s``
                               compressed)
=========  ==================  ==========  ===================

Decoding is strict: one spelling per key, so the DID is usable as a stable account
id. A secp256k1 DID must hold the compressed key, as the did:key spec requires; an
uncompressed or hybrid key inside the DID is refused rather than canonicalized.
"""

from __future__ import annotations

from typing import Final, Literal

from keyproof.crypto import ed25519, secp256k1
from keyproof.crypto.encoding import decode_base58_key_upto, encode_base58
from keyproof.errors import InvalidAccount

__all__ = ["DID_KEY_MAX_LENGTH", "KeyKind", "decode_did_key", "encode_did_key"]

KeyKind = Literal["ed25519", "secp256k1"]

_SCHEME: Final = "did:key:z"
_MAX_PAYLOAD: Final = 128
DID_KEY_MAX_LENGTH: Final = len(_SCHEME) + 176
_CODECS: Final[dict[KeyKind, tuple[bytes, int]]] = {
    "ed25519": (b"\xed\x01", 32),
    "secp256k1": (b"\xe7\x01", 33),
}
# Other public-key multicodecs (varint) short enough to pass the length bound: x25519,
# bls12_381 g1/g2/g1g2, p256, p384, p521, ed448, x448, sm2. Well formed, not accepted.
_OTHER_KEY_CODECS: Final = frozenset(
    bytes.fromhex("ec01 ea01 eb01 ee01 8024 8124 8224 8324 8424 8624")[i : i + 2]
    for i in range(0, 20, 2)
)


def encode_did_key(kind: KeyKind, public_key: bytes) -> str:
    """The ``did:key`` of a public key (secp256k1 keys in any SEC1 form are compressed)."""
    if kind == "ed25519":
        key = ed25519.check_public_key(public_key)
    elif kind == "secp256k1":
        key = secp256k1.canonical_public_key(public_key)
    else:
        raise InvalidAccount("unsupported_account", "unsupported did:key key type")
    prefix, _ = _CODECS[kind]
    return _SCHEME + encode_base58(prefix + key)


def decode_did_key(did: str) -> tuple[KeyKind, bytes]:
    """Parse a ``did:key`` into ``(kind, public_key)``.

    ``invalid_account`` for anything that is not a canonical did:key of a valid key;
    ``unsupported_account`` for a did:key of another known public-key type.
    """
    if len(did) > DID_KEY_MAX_LENGTH or not did.startswith(_SCHEME):
        raise InvalidAccount("invalid_account", "not a base58btc did:key")
    payload = decode_base58_key_upto(did[len(_SCHEME) :], max_length=_MAX_PAYLOAD)
    for kind, (prefix, length) in _CODECS.items():
        if payload.startswith(prefix):
            return kind, _check_key(kind, payload[len(prefix) :], length)
    if payload[:2] in _OTHER_KEY_CODECS:
        raise InvalidAccount("unsupported_account", "unsupported did:key key type")
    raise InvalidAccount("invalid_account", "not a did:key public key")


def _check_key(kind: KeyKind, key: bytes, length: int) -> bytes:
    if len(key) != length:
        raise InvalidAccount("invalid_account", "did:key public key has the wrong length")
    if kind == "ed25519":
        return ed25519.check_public_key(key)
    return secp256k1.canonical_public_key(key)  # 33 bytes: only 02/03 keys parse
