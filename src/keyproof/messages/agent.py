"""The did:key sign-in text for agent keys (CAIP-122 style) and the did:key family.

The layout is SIWE's (ERC-4361 "ABNF Message Format") with its own header, the DID
as the address line, and no ``Chain ID`` line::

    [ scheme "://" ] domain " wants you to sign in with your key:" LF
    did-key LF
    LF
    [ statement LF ]
    LF
    "URI: " uri LF
    "Version: 1" LF
    "Nonce: " nonce LF
    "Issued At: " issued-at
    [ LF "Expiration Time: " expiration-time ]
    [ LF "Not Before: " not-before ]
    [ LF "Request ID: " request-id ]
    [ LF "Resources:" 1*( LF "- " URI ) ]

A did:key names a key, not an account on a chain, so there is no chain to bind and
writing one would only add a field that could disagree; CAIP-122's chain id is left
out and the header alone tells this format apart. Every other rule is SIWE's: two
blank lines when there is no statement, no empty statement, no empty ``Resources:``,
ASCII and LF only, no trailing LF, the refinements in :mod:`keyproof.messages._fields`.

Signatures are unpadded base64url of 64 bytes: the raw ed25519 signature (RFC 8032)
over the exact UTF-8 bytes, or secp256k1 ECDSA over SHA-256 of those bytes as r‖s
with low S. The DID in a message must be canonical (secp256k1 compressed); when a
challenge is requested, a secp256k1 key written uncompressed (04) or hybrid (06/07)
inside the DID is accepted and the challenge names the compressed DID instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from keyproof.accounts import Account, ChallengeText, Family
from keyproof.actions import Action, verify_canonical_json_action
from keyproof.crypto import ed25519, secp256k1
from keyproof.crypto.didkey import DID_KEY_MAX_LENGTH, KeyKind, decode_did_key, encode_did_key
from keyproof.crypto.encoding import decode_base58_key_upto, decode_base64url
from keyproof.errors import InvalidAccount
from keyproof.messages import _fields as f
from keyproof.messages._layout import Layout, Times

__all__ = ["FAMILY", "HEADER_SUFFIX", "AgentFamily", "AgentMessage", "canonical_did_key", "parse"]

HEADER_SUFFIX: Final = " wants you to sign in with your key:"
_DID_RE: Final = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]+", re.ASCII)
_SECP256K1_CODEC: Final = b"\xe7\x01"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentMessage(Times):
    """One did:key sign-in message; constructing it validates every field."""

    scheme: str | None = None
    """RFC 3986 scheme of the requesting origin; ``None`` means https is implied."""
    domain: str
    """RFC 3986 authority requesting the signing."""
    address: str
    """The signer's ``did:key``."""
    statement: str | None = None
    uri: str
    version: str = "1"
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _LAYOUT.check(self)

    def to_text(self) -> str:
        """The exact text: what :func:`parse` read, or what the key signs."""
        return _LAYOUT.render(self)


def _check_address(address: str) -> None:
    if len(address) > DID_KEY_MAX_LENGTH or not _DID_RE.fullmatch(address):
        raise f.malformed("address", "must be a base58btc did:key")


_LAYOUT: Final = Layout(HEADER_SUFFIX, _check_address, has_chain_id=False)


def parse(text: str) -> AgentMessage:
    """Strictly parse a did:key sign-in message; raise ``MalformedMessage`` otherwise."""
    return _LAYOUT.parse(text, AgentMessage)


def _long_secp256k1_key(did: str) -> bytes | None:
    """The SEC1 key inside a secp256k1 did:key that holds a 65-byte (04/06/07) key."""
    if len(did) > DID_KEY_MAX_LENGTH or not _DID_RE.fullmatch(did):
        return None
    try:
        payload = decode_base58_key_upto(did[len("did:key:z") :], max_length=128)
    except InvalidAccount:
        return None
    if payload.startswith(_SECP256K1_CODEC) and len(payload) == 2 + 65:
        return payload[2:]
    return None


def canonical_did_key(did: str) -> tuple[KeyKind, bytes, str]:
    """``(kind, public key, canonical did:key)``; long secp256k1 keys are compressed.

    ``invalid_public_key`` for an off-curve key, a hybrid key with the wrong parity,
    or a small-order / non-canonical ed25519 key; otherwise as ``decode_did_key``.
    """
    long_key = _long_secp256k1_key(did)
    if long_key is not None:
        key = secp256k1.canonical_public_key(long_key)
        return "secp256k1", key, encode_did_key("secp256k1", key)
    kind, key = decode_did_key(did)
    return kind, key, did


class AgentFamily(Family):
    """Agent keys: ``did:key`` ed25519 or secp256k1, the text above, base64url signatures."""

    namespace = "did:key"
    header_suffix = HEADER_SUFFIX

    def split_id(self, text: str) -> tuple[str, str]:
        """A did:key names a key, not an account on a chain: the whole id is the address."""
        return "", text

    def account_id(self, chain: str, address: str) -> str:
        return address

    def canonical_chain(self, reference: str) -> str:
        if reference:
            raise InvalidAccount("invalid_account", "a did:key account has no chain")
        return reference

    def account(self, chain: str, address: str) -> Account:
        if chain:
            raise InvalidAccount("invalid_account", "a did:key account has no chain")
        _, key, did = canonical_did_key(address)
        return self.new_account("", did, key)

    def render(self, challenge: ChallengeText) -> str:
        return AgentMessage(
            domain=challenge.domain,
            address=challenge.account.address,
            statement=challenge.statement,
            uri=challenge.uri,
            nonce=challenge.nonce,
            issued_at=challenge.issued_at,
            expiration_time=challenge.expiration_time,
            resources=challenge.resources,
        ).to_text()

    def parse(self, text: str) -> tuple[AgentMessage, Account]:
        message = parse(text)
        _, key = decode_did_key(message.address)
        return message, self.new_account("", message.address, key)

    def verify(self, account: Account, message: bytes, signature: str) -> None:
        """The key type comes from the account's DID, never from the signature."""
        kind, key = decode_did_key(account.address)
        raw = decode_base64url(signature, length=64)
        if kind == "ed25519":
            ed25519.verify(message, raw, key)
        else:
            secp256k1.verify_sha256_ecdsa(message, raw, key)

    def verify_action(self, account: Account, action: Action, signature: str) -> None:
        verify_canonical_json_action(self, account, action, signature)


FAMILY = AgentFamily()
