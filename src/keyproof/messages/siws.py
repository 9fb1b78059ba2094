"""Sign In With Solana (SIWS) messages: strict parser, renderer and the Solana family.

The layout follows the SIWS ABNF (phantom/sign-in-with-solana, "ABNF Message Format";
rendered the same way by ``createSignInMessageText`` in @solana/wallet-standard-util)::

    domain " wants you to sign in with your Solana account:" LF
    address
    [ LF LF statement ]
    [ LF LF fields ]

    fields = ( "URI: " uri / "Version: " version / "Chain ID: " chain-id / "Nonce: " nonce
             / "Issued At: " / "Expiration Time: " / "Not Before: " date-time
             / "Request ID: " request-id / "Resources:" 1*( LF "- " URI ) )
             each at most once, in that order, separated by LF

So unlike SIWE there is *one* blank line between the address (or statement) and the
fields, and a minimal message is just the header and the address. ``address`` is
32 to 44 base58 characters decoding to a 32-byte ed25519 key; ``chain-id`` is one of
``mainnet testnet devnet localnet solana:mainnet solana:testnet solana:devnet``.

Stricter than the ABNF, and refused by :func:`parse` and :class:`SiwsMessage`:

- a statement that begins like a field (``URI: …``, ``Resources:``): it would read
  back as that field, so the text would not mean what was rendered;
- a ``Resources:`` line with no resource under it; an empty statement;
- non-ASCII, CR, a trailing LF, more than 8192 bytes, and the field refinements of
  :mod:`keyproof.messages._fields` (RFC 3339 times, nonce, URI, authority).

Every field after the address is optional in SIWS. keyproof's own challenges carry
URI, version, chain id, nonce, issued-at and expiration time, and
:func:`require_challenge_fields` refuses a message without them before it is redeemed.

Accounts are CAIP-10 ``solana:<genesis hash prefix>:<base58 key>``; the ``Chain ID``
field names the cluster, so only the three clusters with a published CAIP-2
reference can sign in (``localnet`` has no fixed genesis hash).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from keyproof.accounts import Account, ChallengeText, Family
from keyproof.actions import Action, verify_canonical_json_action
from keyproof.crypto import ed25519
from keyproof.crypto.encoding import decode_base58, decode_base58_key
from keyproof.errors import InvalidAccount
from keyproof.messages import _fields as f
from keyproof.messages._lines import (
    Lines,
    check_envelope,
    read_resources,
    resource_lines,
    strip_header,
)

__all__ = [
    "CHAIN_IDS",
    "CHAIN_REFERENCES",
    "FAMILY",
    "HEADER_SUFFIX",
    "SiwsMessage",
    "SiwsSignIn",
    "SolanaFamily",
    "parse",
    "require_challenge_fields",
]

HEADER_SUFFIX: Final = " wants you to sign in with your Solana account:"
CHAIN_REFERENCES: Final = {
    "mainnet": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    "devnet": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    "testnet": "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z",
}
"""CAIP-2 references (first 32 characters of the genesis hash) by cluster name."""
CHAIN_IDS: Final = frozenset(
    {
        "mainnet",
        "testnet",
        "devnet",
        "localnet",
        "solana:mainnet",
        "solana:testnet",
        "solana:devnet",
    }
)
_CLUSTERS: Final = {reference: name for name, reference in CHAIN_REFERENCES.items()}
_ADDRESS_RE: Final = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}", re.ASCII)
_LABELS: Final = (
    ("uri", "URI: "),
    ("version", "Version: "),
    ("chain_id", "Chain ID: "),
    ("nonce", "Nonce: "),
    ("issued_at", "Issued At: "),
    ("expiration_time", "Expiration Time: "),
    ("not_before", "Not Before: "),
    ("request_id", "Request ID: "),
)
_OPTIONAL: Final = ("statement", *(name for name, _ in _LABELS))
_FIELD_LABELS: Final = tuple(label for _, label in _LABELS)
_LINE: Final = r"[^\n]*"
_SHAPE: Final = re.compile(
    # The layout drawn above, each line ending with LF: the statement is a line that does
    # not start like a field, and a blank line comes before the statement and the fields.
    rf"(?P<domain>{_LINE}){re.escape(HEADER_SUFFIX)}\n(?P<address>{_LINE})\n"
    rf"(?:\n(?!{'|'.join(map(re.escape, _FIELD_LABELS))}|Resources:\n)(?P<statement>{_LINE})\n)?"
    r"(?:\n(?=.)"
    + "".join(rf"(?:{re.escape(label)}(?P<{name}>{_LINE})\n)?" for name, label in _LABELS)
    + rf"(?:Resources:\n(?P<resources>(?:- {_LINE}\n)+))?)?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiwsMessage:
    """One SIWS message; constructing it validates every field.

    Time fields keep their exact text so that :meth:`to_text` gives back the bytes
    that were signed; the ``*_datetime`` accessors return aware datetimes.
    """

    domain: str
    """RFC 3986 authority requesting the sign-in."""
    address: str
    """Base58 ed25519 public key of the signer."""
    statement: str | None = None
    uri: str | None = None
    version: str | None = None
    chain_id: str | None = None
    """Cluster name as written (``mainnet``, ``solana:devnet``, …)."""
    nonce: str | None = None
    issued_at: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        f.check_text_types(self, ("domain", "address"), _OPTIONAL)
        f.check_resources_type(self.resources)
        self._check_fields()
        f.check_message_size(self.to_text())

    def _check_fields(self) -> None:
        """Each field's grammar, in the order the constructor applies them."""
        f.check_authority(self.domain)
        _check_address(self.address)
        if self.statement is not None:
            _check_statement(self.statement)
        if self.uri is not None:
            f.check_uri(self.uri)
        if self.version not in (None, "1"):
            raise f.malformed("version", "must be 1")
        if self.chain_id is not None and self.chain_id not in CHAIN_IDS:
            raise f.malformed("chain id", "not a Solana cluster name")
        if self.nonce is not None:
            f.check_nonce(self.nonce)
        self._times()
        if self.request_id is not None:
            f.check_request_id(self.request_id)
        f.check_resources(self.resources)

    def _times(self) -> tuple[datetime | None, datetime | None, datetime | None]:
        return (
            f.parse_optional_datetime(self.issued_at, "issued at"),
            f.parse_optional_datetime(self.expiration_time, "expiration time"),
            f.parse_optional_datetime(self.not_before, "not before"),
        )

    def issued_at_datetime(self) -> datetime | None:
        return f.parse_optional_datetime(self.issued_at, "issued at")

    def expiration_datetime(self) -> datetime | None:
        return f.parse_optional_datetime(self.expiration_time, "expiration time")

    def not_before_datetime(self) -> datetime | None:
        return f.parse_optional_datetime(self.not_before, "not before")

    def to_text(self) -> str:
        """The exact SIWS text: what :func:`parse` read, or what a wallet signs."""
        text = f"{self.domain}{HEADER_SUFFIX}\n{self.address}"
        if self.statement is not None:
            text += f"\n\n{self.statement}"
        values = ((label, getattr(self, name)) for name, label in _LABELS)
        fields = [label + value for label, value in values if value is not None]
        fields += resource_lines(self.resources)
        if fields:
            text += "\n\n" + "\n".join(fields)
        return text


def _check_address(address: str) -> None:
    if _ADDRESS_RE.fullmatch(address) is None:
        raise f.malformed("address", "must be 32 to 44 base58 characters")
    try:
        decode_base58_key(address, length=32)
    except InvalidAccount:
        raise f.malformed("address", "must be the canonical base58 of 32 bytes") from None


def _starts_a_field(line: str) -> bool:
    return line == "Resources:" or line.startswith(_FIELD_LABELS)


def _check_statement(statement: str) -> None:
    f.check_statement(statement)
    if _starts_a_field(statement):
        raise f.malformed("statement", "must not begin like a field line")


def _statement(lines: Lines) -> str | None:
    """After the address: nothing, or LF LF and a statement or the first field."""
    if lines.done():
        return None
    lines.blank("line after address")
    if _starts_a_field(lines.peek() or ""):
        return None
    statement = lines.next("statement")
    if not lines.done():
        lines.blank("line after statement")
    return statement


def _read_lines(text: str) -> dict[str, object]:
    lines = Lines(text)
    fields: dict[str, object] = {"domain": strip_header(lines.next("header"), HEADER_SUFFIX)}
    fields["address"] = lines.next("address")
    fields["statement"] = _statement(lines)
    for name, label in _LABELS:
        fields[name] = lines.optional(label)
    fields["resources"] = read_resources(lines)
    lines.finish()
    return fields


def _read_at_once(text: str) -> dict[str, object] | None:
    """What :func:`_read_lines` reads from a text in the SIWS shape, else ``None``."""
    match = _SHAPE.fullmatch(text + "\n")  # every line, the last too, then ends with LF
    if match is None:
        return None
    listed = match["resources"]
    resources = tuple(line[2:] for line in listed[:-1].split("\n")) if listed else ()
    if len(resources) > f.MAX_RESOURCES:
        return None
    fields: dict[str, object] = match.groupdict()
    fields["resources"] = resources
    return fields


def parse(text: str) -> SiwsMessage:
    """Strictly parse a SIWS message; raise ``MalformedMessage`` if it breaks the ABNF.

    The constructor's checks run once, in its order: the types and the size are the
    parser's own (the text, which is what the message renders, passed the size bound),
    then the grammar of each field.
    """
    text = check_envelope(text)
    fields = _read_at_once(text)
    if fields is None:  # not in the SIWS shape: read line by line for the exact refusal
        fields = _read_lines(text)
    message = f.unchecked(SiwsMessage, fields)
    message._check_fields()
    return message


@dataclass(frozen=True, slots=True)
class SiwsSignIn:
    """A SIWS message that carries every field keyproof binds a challenge to."""

    message: SiwsMessage
    uri: str
    version: str
    chain_id: str
    nonce: str
    issued_at: datetime
    expiration: datetime

    @property
    def scheme(self) -> None:
        """SIWS names no origin scheme."""
        return None

    @property
    def domain(self) -> str:
        return self.message.domain

    @property
    def statement(self) -> str | None:
        return self.message.statement

    @property
    def resources(self) -> tuple[str, ...]:
        return self.message.resources

    @property
    def request_id(self) -> str | None:
        return self.message.request_id

    def issued_at_datetime(self) -> datetime:
        return self.issued_at

    def expiration_datetime(self) -> datetime:
        return self.expiration

    def not_before_datetime(self) -> datetime | None:
        return self.message.not_before_datetime()

    def to_text(self) -> str:
        return self.message.to_text()


def _required(value: str | None, field: str) -> str:
    if value is None:
        raise f.malformed(field, "required by this service")
    return value


def require_challenge_fields(message: SiwsMessage) -> SiwsSignIn:
    """Refuse a SIWS message without URI, version, chain id, nonce, issued-at or expiry."""
    return SiwsSignIn(
        message=message,
        uri=_required(message.uri, "uri"),
        version=_required(message.version, "version"),
        chain_id=_required(message.chain_id, "chain id"),
        nonce=_required(message.nonce, "nonce"),
        issued_at=f.parse_datetime(_required(message.issued_at, "issued at"), "issued at"),
        expiration=f.parse_datetime(
            _required(message.expiration_time, "expiration time"), "expiration time"
        ),
    )


def _reference(chain_id: str) -> str:
    reference = CHAIN_REFERENCES.get(chain_id.removeprefix("solana:"))
    if reference is None:
        raise InvalidAccount("unsupported_account", f"cluster {chain_id} has no CAIP-2 reference")
    return reference


class SolanaFamily(Family):
    """Solana accounts: CAIP-10 ``solana:<reference>:<base58 key>``, SIWS, ed25519."""

    namespace = "solana"
    header_suffix = HEADER_SUFFIX

    def canonical_chain(self, reference: str) -> str:
        """The CAIP-2 reference; a cluster name (``mainnet``) is accepted for its own."""
        canonical = CHAIN_REFERENCES.get(reference, reference)
        if canonical not in _CLUSTERS:
            raise InvalidAccount("unsupported_account", f"unknown Solana chain {reference[:40]!r}")
        return canonical

    def account(self, chain: str, address: str) -> Account:
        """Canonicalize; a cluster name (``mainnet``) is accepted for its reference."""
        reference = self.canonical_chain(chain)
        key = ed25519.check_public_key(decode_base58_key(address, length=32))
        return self.new_account(reference, address, key)

    def render(self, challenge: ChallengeText) -> str:
        return SiwsMessage(
            domain=challenge.domain,
            address=challenge.account.address,
            statement=challenge.statement,
            uri=challenge.uri,
            version="1",
            chain_id=_CLUSTERS[challenge.account.chain],
            nonce=challenge.nonce,
            issued_at=challenge.issued_at,
            expiration_time=challenge.expiration_time,
            resources=challenge.resources,
        ).to_text()

    def parse(self, text: str) -> tuple[SiwsSignIn, Account]:
        signed = require_challenge_fields(parse(text))
        return signed, self.account(_reference(signed.chain_id), signed.message.address)

    def verify(self, account: Account, message: bytes, signature: str) -> None:
        """Ed25519 over the exact bytes; the signature is base58 of 64 bytes."""
        ed25519.verify(message, decode_base58(signature, length=64), account.public_key)

    def verify_action(self, account: Account, action: Action, signature: str) -> None:
        verify_canonical_json_action(self, account, action, signature)


FAMILY = SolanaFamily()
