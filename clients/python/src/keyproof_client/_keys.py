"""Local signing keys of the four kinds keyproof signs in (specs/protocol.md §2).

- ``ed25519``: ``did:key:z6Mk…``; ed25519 (RFC 8032); unpadded base64url.
- ``secp256k1``: ``did:key:zQ3s…``; ECDSA over SHA-256, r‖s with low S; base64url.
- ``ethereum``: ``eip155:1:0x…`` (EIP-55); EIP-191 ``personal_sign``, r‖s‖v; ``0x`` hex.
- ``solana``: ``solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:<base58 key>``; ed25519, as a
  wallet's ``signMessage``; base58.

Each is ``type: account (token sub); what signs the exact UTF-8 text; wire encoding``.
Signatures come from libsodium (pynacl) and libsecp256k1 (coincurve), whose ECDSA
nonces are RFC 6979 and whose signatures are low-S, as the verifier requires. Ids are
spelt by keyproof's own account families, so the client and the server agree on them.
A key never shows its secret in ``repr``; :meth:`Key.secret_text` is for key files only.
"""

from __future__ import annotations

import abc
import hashlib
from typing import ClassVar, Final, Literal, get_args

from coincurve import PrivateKey
from keyproof.accounts import canonical_account
from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base58, encode_base64url, encode_hex0x
from keyproof.crypto.secp256k1 import address_from_public_key, checksum_address, eip191_digest
from keyproof.errors import KeyproofError
from nacl.signing import SigningKey

from keyproof_client._errors import KeyproofClientError

KeyType = Literal["ed25519", "secp256k1", "ethereum", "solana"]
KEY_TYPES: Final[tuple[KeyType, ...]] = get_args(KeyType)
SOLANA_MAINNET: Final = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"


class Key(abc.ABC):
    """A private key that signs keyproof challenges for one account family."""

    type: ClassVar[KeyType]
    default_chain: ClassVar[str]
    """The CAIP-2 chain of :meth:`account` when none is named."""

    @property
    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The raw public key (ed25519: 32 bytes; secp256k1: 33 bytes, compressed)."""

    @property
    @abc.abstractmethod
    def did(self) -> str:
        """The ``did:key`` of the public key."""

    @abc.abstractmethod
    def address(self) -> str:
        """The address part of the account id."""

    def account(self, chain: str | None = None) -> str:
        """The canonical account id on ``chain`` (CAIP-2), as keyproof spells it."""
        chain = chain or self.default_chain
        text = self.address() if chain == "did:key" else f"{chain}:{self.address()}"
        try:
            return canonical_account(text).id
        except KeyproofError as refused:
            raise KeyproofClientError.relay(refused) from None

    @abc.abstractmethod
    def sign(self, message: str) -> str:
        """Sign the exact UTF-8 bytes of ``message``; the family's wire encoding."""

    @abc.abstractmethod
    def secret_text(self) -> str:
        """The private key as a key file holds it. Never log or print it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(type={self.type!r}, did={self.did!r})"


class _Ed25519(Key):
    def __init__(self, seed: bytes) -> None:
        self._signing_key = SigningKey(seed)

    @classmethod
    def generate(cls) -> Key:
        return cls(bytes(SigningKey.generate()))

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def did(self) -> str:
        return encode_did_key("ed25519", self.public_key)

    def _signature(self, message: str) -> bytes:
        signature: bytes = self._signing_key.sign(message.encode("utf-8")).signature
        return signature

    def _seed(self) -> bytes:
        return bytes(self._signing_key)


class _Secp256k1(Key):
    def __init__(self, secret: bytes) -> None:
        self._private_key = PrivateKey(secret)  # ValueError unless 1 <= secret < n

    @classmethod
    def generate(cls) -> Key:
        return cls(PrivateKey().secret)

    @property
    def public_key(self) -> bytes:
        public: bytes = self._private_key.public_key.format(compressed=True)
        return public

    @property
    def did(self) -> str:
        return encode_did_key("secp256k1", self.public_key)

    def _secret(self) -> bytes:
        secret: bytes = self._private_key.secret
        return secret


class Ed25519AgentKey(_Ed25519):
    type = "ed25519"
    default_chain = "did:key"

    def address(self) -> str:
        return self.did

    def sign(self, message: str) -> str:
        return encode_base64url(self._signature(message))

    def secret_text(self) -> str:
        return encode_base64url(self._seed())


class Secp256k1AgentKey(_Secp256k1):
    type = "secp256k1"
    default_chain = "did:key"

    def address(self) -> str:
        return self.did

    def sign(self, message: str) -> str:
        data = message.encode("utf-8")
        signed = self._private_key.sign_recoverable(data, hasher=_sha256)
        return encode_base64url(signed[:64])  # r‖s; the recovery id is not sent

    def secret_text(self) -> str:
        return encode_base64url(self._secret())


class EthereumKey(_Secp256k1):
    type = "ethereum"
    default_chain = "eip155:1"

    def address(self) -> str:
        return checksum_address(address_from_public_key(self.public_key))

    def sign(self, message: str) -> str:
        digest = eip191_digest(message.encode("utf-8"))
        signed = self._private_key.sign_recoverable(digest, hasher=None)
        return encode_hex0x(signed[:64] + bytes([27 + signed[64]]))

    def secret_text(self) -> str:
        return encode_hex0x(self._secret())


class SolanaKey(_Ed25519):
    type = "solana"
    default_chain = SOLANA_MAINNET

    def address(self) -> str:
        return encode_base58(self.public_key)

    def sign(self, message: str) -> str:
        return encode_base58(self._signature(message))

    def secret_text(self) -> str:
        """Base58 of seed ‖ public key, the 64 bytes a Solana wallet exports."""
        return encode_base58(self._seed() + self.public_key)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


KEY_CLASSES: Final[dict[KeyType, type[_Ed25519] | type[_Secp256k1]]] = {
    "ed25519": Ed25519AgentKey,
    "secp256k1": Secp256k1AgentKey,
    "ethereum": EthereumKey,
    "solana": SolanaKey,
}


def generate_key(key_type: KeyType) -> Key:
    """A new random key of ``key_type`` (``ed25519``, ``secp256k1``, ``ethereum``, ``solana``)."""
    if key_type not in KEY_CLASSES:
        raise KeyproofClientError("invalid_key", f"key type must be one of {', '.join(KEY_TYPES)}")
    return KEY_CLASSES[key_type].generate()
