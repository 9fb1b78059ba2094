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
from datetime import datetime
from typing import Final

from keyproof.accounts import Account, ChallengeText, Family
from keyproof.crypto.secp256k1 import checksum_address, decode_signature_hex, verify_eip191
from keyproof.errors import BindingMismatch, InvalidAccount, NonceRejected
from keyproof.messages import _fields as f

__all__ = ["FAMILY", "HEADER_SUFFIX", "EthereumFamily", "SiweMessage", "parse", "verify"]

HEADER_SUFFIX: Final = " wants you to sign in with your Ethereum account:"
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_CHAIN_RE: Final = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)
_TEXT_FIELDS: Final = ("domain", "address", "uri", "version", "nonce", "issued_at")
_OPTIONAL_TEXT_FIELDS: Final = (
    "scheme",
    "statement",
    "expiration_time",
    "not_before",
    "request_id",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiweMessage:
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
        _check_types(self)
        if self.scheme is not None:
            f.check_scheme(self.scheme)
        f.check_authority(self.domain)
        _check_address(self.address)
        if self.statement is not None:
            f.check_statement(self.statement)
        f.check_uri(self.uri)
        if self.version != "1":
            raise f.malformed("version", "must be 1")
        f.parse_chain_id(str(self.chain_id))
        f.check_nonce(self.nonce)
        self._times()
        if self.request_id is not None:
            f.check_request_id(self.request_id)
        f.check_resources(self.resources)
        f.check_message_size(self.to_text())

    def _times(self) -> tuple[datetime, datetime | None, datetime | None]:
        return (
            f.parse_datetime(self.issued_at, "issued at"),
            _optional_time(self.expiration_time, "expiration time"),
            _optional_time(self.not_before, "not before"),
        )

    def issued_at_datetime(self) -> datetime:
        """``Issued At`` as an aware datetime."""
        return self._times()[0]

    def expiration_datetime(self) -> datetime | None:
        """``Expiration Time`` as an aware datetime, if present."""
        return self._times()[1]

    def not_before_datetime(self) -> datetime | None:
        """``Not Before`` as an aware datetime, if present."""
        return self._times()[2]

    def to_text(self) -> str:
        """The exact ERC-4361 text: what :func:`parse` read, or what a wallet signs."""
        origin = self.domain if self.scheme is None else f"{self.scheme}://{self.domain}"
        lines = [origin + HEADER_SUFFIX, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self.issued_at}",
        ]
        optional = (
            ("Expiration Time: ", self.expiration_time),
            ("Not Before: ", self.not_before),
            ("Request ID: ", self.request_id),
        )
        lines += [label + value for label, value in optional if value is not None]
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)


def _check_types(message: SiweMessage) -> None:
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(message, name), str):
            raise f.malformed(name, "must be text")
    for name in _OPTIONAL_TEXT_FIELDS:
        if not isinstance(getattr(message, name), str | None):
            raise f.malformed(name, "must be text or None")
    if type(message.chain_id) is not int:
        raise f.malformed("chain id", "must be an int")
    resources = message.resources
    if not isinstance(resources, tuple) or not all(isinstance(r, str) for r in resources):
        raise f.malformed("resources", "must be a tuple of text")


def _check_address(address: str) -> None:
    if _ADDRESS_RE.fullmatch(address) is None:
        raise f.malformed("address", "must be 0x and 40 hex digits")
    if checksum_address(bytes.fromhex(address[2:])) != address:
        raise f.malformed("address", "not in EIP-55 checksum spelling")


def _optional_time(value: str | None, field: str) -> datetime | None:
    return None if value is None else f.parse_datetime(value, field)


class _Lines:
    """A cursor over the LF-separated lines of a message."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._at = 0

    def done(self) -> bool:
        return self._at >= len(self._lines)

    def next(self, what: str) -> str:
        if self.done():
            raise f.malformed(what, "missing")
        line = self._lines[self._at]
        self._at += 1
        return line

    def blank(self, what: str) -> None:
        if self.next(what) != "":
            raise f.malformed(what, "expected an empty line")

    def field(self, label: str, what: str | None = None) -> str:
        what = what or label.removesuffix(": ").lower()
        line = self.next(what)
        if not line.startswith(label):
            raise f.malformed(what, f"expected a line starting with {label!r}")
        return line[len(label) :]

    def optional(self, label: str) -> str | None:
        if self.done() or not self._lines[self._at].startswith(label):
            return None
        return self.field(label)

    def is_next(self, line: str) -> bool:
        return not self.done() and self._lines[self._at] == line


def _check_envelope(text: str) -> None:
    if not isinstance(text, str):
        raise f.malformed("message", "must be text")
    f.check_message_size(text)
    if not text.isascii():
        raise f.malformed("message", "only ASCII is allowed")
    if "\r" in text:
        raise f.malformed("message", "lines must end with LF only")
    if text.endswith("\n"):
        raise f.malformed("message", "must not end with a line break")


def _origin(header: str) -> tuple[str | None, str]:
    if not header.endswith(HEADER_SUFFIX):
        raise f.malformed("header", f"must end with {HEADER_SUFFIX.strip()!r}")
    origin = header.removesuffix(HEADER_SUFFIX)
    if "://" not in origin:
        return None, origin
    scheme, domain = origin.split("://", 1)
    return scheme, domain


def _statement(lines: _Lines) -> str | None:
    lines.blank("line after address")
    statement = lines.next("statement")
    if statement == "":
        return None
    lines.blank("line after statement")
    return statement


def _resources(lines: _Lines) -> tuple[str, ...]:
    if not lines.is_next("Resources:"):
        return ()
    lines.next("resources")
    found: list[str] = []
    while not lines.done():
        if len(found) == f.MAX_RESOURCES:
            raise f.malformed("resources", f"more than {f.MAX_RESOURCES} entries")
        found.append(lines.field("- ", f"resources[{len(found)}]"))
    if not found:
        raise f.malformed("resources", "a Resources: line needs at least one resource")
    return tuple(found)


def parse(text: str) -> SiweMessage:
    """Strictly parse an ERC-4361 message; raise ``MalformedMessage`` if it breaks the ABNF."""
    _check_envelope(text)
    lines = _Lines(text)
    scheme, domain = _origin(lines.next("header"))
    address = lines.next("address")
    statement = _statement(lines)
    uri = lines.field("URI: ")
    version = lines.field("Version: ")
    chain_id = f.parse_chain_id(lines.field("Chain ID: "))
    nonce = lines.field("Nonce: ")
    issued_at = lines.field("Issued At: ")
    expiration_time = lines.optional("Expiration Time: ")
    not_before = lines.optional("Not Before: ")
    request_id = lines.optional("Request ID: ")
    resources = _resources(lines)
    if not lines.done():
        raise f.malformed("message", "unexpected line after the last field")
    return SiweMessage(
        scheme=scheme,
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=resources,
    )


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
    f.check_window(message.not_before_datetime(), message.expiration_datetime(), now)
    raw_signature = decode_signature_hex(signature)
    verify_eip191(text.encode("utf-8"), raw_signature, bytes.fromhex(message.address[2:]))
    return message


class EthereumFamily(Family):
    """Ethereum EOAs: CAIP-10 ``eip155:<chain>:<EIP-55 address>``, SIWE, EIP-191."""

    namespace = "eip155"
    header_suffix = HEADER_SUFFIX

    def account(self, chain: str, address: str) -> Account:
        if not _CHAIN_RE.fullmatch(chain) or not _ADDRESS_RE.fullmatch(address):
            raise InvalidAccount("invalid_account", "expected eip155:<chain id>:0x<40 hex>")
        raw = bytes.fromhex(address[2:])
        canonical = checksum_address(raw)
        mixed_case = address[2:] not in (address[2:].lower(), address[2:].upper())
        if mixed_case and address != canonical:
            raise InvalidAccount("invalid_account", "address fails its EIP-55 checksum")
        return Account(self.namespace, chain, canonical, raw)

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
        return message, self.account(str(message.chain_id), message.address)

    def verify(self, account: Account, message: bytes, signature: str) -> None:
        verify_eip191(message, decode_signature_hex(signature), account.public_key)


FAMILY = EthereumFamily()
