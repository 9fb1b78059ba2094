"""Sign-In with Ethereum (ERC-4361) messages: strict parser, renderer and verifier.

The layout follows the ERC-4361 ABNF ("ABNF Message Format")::

    [ scheme "://" ] domain " wants you to sign in with your Ethereum account:" LF
    address LF
    LF
    [ statement LF ]
    LF
    "URI: " uri LF
    "Version: " version LF
    "Chain ID: " chain-id LF
    "Nonce: " nonce LF
    "Issued At: " issued-at
    [ LF "Expiration Time: " expiration-time ]
    [ LF "Not Before: " not-before ]
    [ LF "Request ID: " request-id ]
    [ LF "Resources:" *( LF "- " URI ) ]

So the address is followed by one blank line, then the statement line and a second
blank line when there is a statement, and by *two* blank lines (three LFs in a row)
when there is none; spruceid's reference ``siwe`` renders and parses the same way.

keyproof is deliberately stricter than the ABNF where the ABNF is ambiguous or unsafe,
and :func:`parse` and :class:`SiweMessage` refuse:

- an empty statement (``address LF LF LF LF``): leave the statement out instead, so
  ``None`` and ``""`` cannot both mean "nothing to show";
- a ``Resources:`` line with no resource under it;
- an address that is not exactly its EIP-55 checksum spelling (all lower case too);
- ``version`` other than ``1``; chain id ``0``, with leading zeros or above EIP-2294;
- CR anywhere, a trailing LF, more than 8192 bytes or 64 resources, and the field
  refinements listed in :mod:`keyproof.messages._fields`.

Every failure on untrusted text is a :class:`~keyproof.errors.KeyproofError`.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from keyproof._time import check_window
from keyproof.accounts import Account, ChallengeText, Family
from keyproof.actions import Action, signer_mismatch
from keyproof.chain import MAX_CONTRACT_SIGNATURE_CHARS
from keyproof.crypto.secp256k1 import (
    checksum_address,
    decode_signature_hex,
    eip191_digest,
    recover_digest,
    verify_eip191,
)
from keyproof.errors import BindingMismatch, InvalidAccount, NonceRejected
from keyproof.messages import _fields as f
from keyproof.messages._layout import Layout, Times

__all__ = ["FAMILY", "HEADER_SUFFIX", "EthereumFamily", "SiweMessage", "parse", "verify"]

HEADER_SUFFIX: Final = " wants you to sign in with your Ethereum account:"
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_CHAIN_RE: Final = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiweMessage(Times):
    """One ERC-4361 message; constructing it validates every field.

    Time fields keep their exact text so that :meth:`to_text` gives back the bytes
    that were signed; the ``*_datetime`` accessors return aware datetimes.
    """

    scheme: str | None = None
    """RFC 3986 scheme of the requesting origin; ``None`` means https is implied."""
    domain: str
    """RFC 3986 authority requesting the signing."""
    address: str
    """EIP-55 checksummed address of the signer."""
    statement: str | None = None
    """Human-readable ASCII assertion, without LF."""
    uri: str
    """RFC 3986 URI of the subject of the signing."""
    version: str = "1"
    chain_id: int
    """EIP-155 chain id the session is bound to."""
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    """RFC 3986 URIs; a ReCap (EIP-5573) is the last one."""

    def __post_init__(self) -> None:
        _LAYOUT.check(self, self.chain_id)

    def to_text(self) -> str:
        """The exact ERC-4361 text: what :func:`parse` read, or what a wallet signs."""
        return _LAYOUT.render(self, self.chain_id)


def _check_address(address: str) -> None:
    if _ADDRESS_RE.fullmatch(address) is None:
        raise f.malformed("address", "must be 0x and 40 hex digits")
    if checksum_address(bytes.fromhex(address[2:])) != address:
        raise f.malformed("address", "not in EIP-55 checksum spelling")


_LAYOUT: Final = Layout(HEADER_SUFFIX, _check_address, has_chain_id=True)


def parse(text: str) -> SiweMessage:
    """Strictly parse an ERC-4361 message; raise ``MalformedMessage`` if it breaks the ABNF."""
    return _LAYOUT.parse(text, SiweMessage)


def verify(
    text: str,
    signature: str,
    *,
    domain: str,
    nonce: str,
    now: datetime | None = None,
) -> SiweMessage:
    """Parse ``text``, check it against the binding and verify its EIP-191 signature.

    Checks, in order: the ABNF; ``domain`` (``domain_mismatch``); ``nonce``
    (``nonce_unknown``); ``not_before <= now < expiration`` (``message_not_yet_valid``,
    ``message_expired``); the signature over the exact UTF-8 bytes of ``text`` by the
    message's address (``malformed_signature``, ``signature_invalid``). ``now`` must be
    timezone-aware and defaults to the current UTC time.
    """
    message = parse(text)
    if message.domain != domain:
        raise BindingMismatch("domain_mismatch", "message domain is not this service's")
    if not hmac.compare_digest(message.nonce.encode(), nonce.encode()):
        raise NonceRejected("nonce_unknown", "message nonce was not issued for this sign-in")
    moment = datetime.now(UTC) if now is None else now
    if moment.utcoffset() is None:
        raise TypeError("now must be a timezone-aware datetime")
    check_window(
        moment.timestamp(),
        expires_at=_timestamp(message.expiration_datetime()),
        not_before=_timestamp(message.not_before_datetime()),
    )
    raw_signature = decode_signature_hex(signature)
    verify_eip191(text.encode("utf-8"), raw_signature, bytes.fromhex(message.address[2:]))
    return message


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class EthereumFamily(Family):
    """Ethereum accounts: CAIP-10 ``eip155:<chain>:<EIP-55 address>``, SIWE, EIP-191.

    :meth:`verify` and :meth:`verify_action` are the offline EOA checks; a contract
    wallet's signature (EIP-1271, ERC-6492) is checked on chain over
    :meth:`contract_digest` by :class:`keyproof.chain.ContractWallets`.
    """

    namespace = "eip155"
    header_suffix = HEADER_SUFFIX
    max_signature_chars = MAX_CONTRACT_SIGNATURE_CHARS

    def canonical_chain(self, reference: str) -> str:
        if not _CHAIN_RE.fullmatch(reference):
            raise InvalidAccount("invalid_account", "an eip155 chain id is a decimal number")
        return reference

    def account(self, chain: str, address: str) -> Account:
        if not _CHAIN_RE.fullmatch(chain) or not _ADDRESS_RE.fullmatch(address):
            raise InvalidAccount("invalid_account", "expected eip155:<chain id>:0x<40 hex>")
        raw = bytes.fromhex(address[2:])
        canonical = checksum_address(raw)
        mixed_case = address[2:] not in (address[2:].lower(), address[2:].upper())
        if mixed_case and address != canonical:
            raise InvalidAccount("invalid_account", "address fails its EIP-55 checksum")
        return self.new_account(chain, canonical, raw)

    def render(self, challenge: ChallengeText) -> str:
        return SiweMessage(
            domain=challenge.domain,
            address=challenge.account.address,
            statement=challenge.statement,
            uri=challenge.uri,
            chain_id=int(challenge.account.chain),
            nonce=challenge.nonce,
            issued_at=challenge.issued_at,
            expiration_time=challenge.expiration_time,
            resources=challenge.resources,
        ).to_text()

    def parse(self, text: str) -> tuple[SiweMessage, Account]:
        message = parse(text)
        # parse() already holds the address to its EIP-55 spelling: no second checksum.
        raw = bytes.fromhex(message.address[2:])
        return message, self.new_account(str(message.chain_id), message.address, raw)

    def verify(self, account: Account, message: bytes, signature: str) -> None:
        verify_eip191(message, decode_signature_hex(signature), account.public_key)

    def verify_action(self, account: Account, action: Action, signature: str) -> None:
        """EIP-712 typed data (``eth_signTypedData_v4``), recovered like ``personal_sign``."""
        signer = recover_digest(action.typed_data_digest(), decode_signature_hex(signature))
        if not hmac.compare_digest(signer, account.public_key):
            raise signer_mismatch()

    def contract_digest(self, message: bytes) -> bytes:
        """The EIP-191 hash: what viem's ``verifyMessage`` hands to ``isValidSignature``."""
        return eip191_digest(message)

    def contract_action_digest(self, action: Action) -> bytes:
        """The EIP-712 digest of the action's typed data."""
        return action.typed_data_digest()


FAMILY = EthereumFamily()
