"""Account identifiers and the account families that sign in with them (specs/protocol.md §2).

An account is a CAIP-10 id (``eip155:1:0x…``, ``solana:<ref>:<base58>``) or a
``did:key``. Each family (Ethereum, Solana, agent keys) is one ``Family`` object that
lives beside its message format in ``keyproof.messages`` and owns everything that
differs between families: the spelling of its account ids and chains, its sign-in
text, its signatures and how its accounts sign actions. Families are listed in one
explicit table, :data:`SHIPPED_FAMILIES`, and imported on first use;
:func:`register_family` adds another at run time.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

from keyproof.errors import InvalidAccount, MalformedMessage

if TYPE_CHECKING:
    from keyproof.actions import Action

__all__ = [
    "SHIPPED_FAMILIES",
    "Account",
    "ChallengeText",
    "Family",
    "SignInMessage",
    "canonical_account",
    "canonical_chain",
    "families",
    "family_for_message",
    "parse_account",
    "register_family",
    "unregister_family",
]

MAX_ACCOUNT_LENGTH = 200
MAX_SIGNATURE_CHARS: Final = 256
CAIP10 = re.compile(r"([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32}):([-.%a-zA-Z0-9]{1,128})")
SHIPPED_FAMILIES: Final = {
    "eip155": "keyproof.messages.siwe",
    "solana": "keyproof.messages.siws",
    "did:key": "keyproof.messages.agent",
}
"""Namespace -> the module whose ``FAMILY`` implements it."""


@dataclass(frozen=True, slots=True)
class Account:
    """A canonical account; the token ``sub`` is ``id``. Built by its :class:`Family`."""

    namespace: str
    chain: str
    address: str
    public_key: bytes
    id: str

    @property
    def caip2(self) -> str:
        """The chain the account lives on (CAIP-2), or the bare namespace if it has none."""
        return f"{self.namespace}:{self.chain}" if self.chain else self.namespace


class SignInMessage(Protocol):
    """The view of a parsed sign-in message that the redeem pipeline needs."""

    @property
    def scheme(self) -> str | None: ...
    @property
    def domain(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def statement(self) -> str | None: ...
    @property
    def resources(self) -> tuple[str, ...]: ...
    @property
    def request_id(self) -> str | None: ...
    def issued_at_datetime(self) -> datetime: ...
    def expiration_datetime(self) -> datetime | None: ...
    def not_before_datetime(self) -> datetime | None: ...
    def to_text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ChallengeText:
    """Everything the server writes into a challenge message it builds."""

    account: Account
    domain: str
    uri: str
    statement: str | None
    nonce: str
    issued_at: str
    expiration_time: str
    resources: tuple[str, ...]


class Family(abc.ABC):
    """One account family: its ids, its sign-in text, its signatures and signed actions."""

    namespace: ClassVar[str]
    """``eip155``, ``solana`` or ``did:key``."""
    header_suffix: ClassVar[str]
    """How the first line of this family's messages ends."""
    max_signature_chars: ClassVar[int] = MAX_SIGNATURE_CHARS
    """Longest signature (wire encoding) looked at; more only for contract accounts."""

    def split_id(self, text: str) -> tuple[str, str]:
        """``(chain reference, address)`` of an account id; CAIP-10 unless overridden."""
        match = CAIP10.fullmatch(text)
        if match is None:
            raise InvalidAccount("invalid_account", "account must be a CAIP-10 id or did:key")
        return match[2], match[3]

    def account_id(self, chain: str, address: str) -> str:
        """The canonical id (token ``sub``) of an address on a chain; CAIP-10 by default."""
        return f"{self.namespace}:{chain}:{address}"

    def new_account(self, chain: str, address: str, public_key: bytes) -> Account:
        """An :class:`Account` of this family from already canonical parts."""
        return Account(self.namespace, chain, address, public_key, self.account_id(chain, address))

    @abc.abstractmethod
    def canonical_chain(self, reference: str) -> str:
        """The canonical CAIP-2 reference; raise ``InvalidAccount`` for an unknown chain."""

    @abc.abstractmethod
    def account(self, chain: str, address: str) -> Account:
        """Canonicalize; raise ``InvalidAccount`` if the address is not valid."""

    @abc.abstractmethod
    def render(self, challenge: ChallengeText) -> str:
        """The exact text the account is asked to sign."""

    @abc.abstractmethod
    def parse(self, text: str) -> tuple[SignInMessage, Account]:
        """Strictly parse ``text``; return it and the account it names."""

    @abc.abstractmethod
    def verify(self, account: Account, message: bytes, signature: str) -> None:
        """Raise unless ``signature`` (wire encoding) signs ``message`` by ``account``."""

    @abc.abstractmethod
    def verify_action(self, account: Account, action: Action, signature: str) -> None:
        """Raise unless ``signature`` signs ``action`` in this family's action format.

        ``MalformedSignature`` for a signature in the wrong encoding, ``SignatureInvalid``
        where the family can tell a broken signature apart, and ``ActionRejected``
        (``action_signer_mismatch``) when it is not the account's.
        """

    def contract_digest(self, message: bytes) -> bytes | None:
        """The hash a contract account checks for a sign-in of ``message`` (EIP-1271).

        ``None``, the default, for families without contract accounts: a signature that
        fails :meth:`verify` is then refused without asking any chain.
        """
        return None

    def contract_action_digest(self, action: Action) -> bytes | None:
        """As :meth:`contract_digest`, for a signed action."""
        return None


_families: dict[str, Family] = {}


def families() -> Mapping[str, Family]:
    """Every family by namespace: the shipped ones, then any registered at run time."""
    for namespace, module in SHIPPED_FAMILIES.items():
        if namespace not in _families:
            family = import_module(module).FAMILY
            _families[family.namespace] = family
    return _families


def register_family(family: Family) -> None:
    """Add a family of another namespace; every keyproof component then accepts it."""
    if family.namespace in families():
        raise ValueError(f"a family for {family.namespace!r} is already registered")
    _families[family.namespace] = family


def unregister_family(namespace: str) -> None:
    """Remove a family added with :func:`register_family`; shipped ones stay."""
    if namespace in SHIPPED_FAMILIES:
        raise ValueError(f"{namespace!r} is a shipped family")
    _families.pop(namespace, None)


def _family_of_id(text: str) -> Family:
    named = [f for ns, f in families().items() if text.startswith(ns + ":")]
    if named:
        return max(named, key=lambda family: len(family.namespace))
    match = CAIP10.fullmatch(text)
    if match:
        raise InvalidAccount("unsupported_account", f"unsupported account type {match[1]!r}")
    raise InvalidAccount("invalid_account", "account must be a CAIP-10 id or did:key")


def canonical_account(text: str) -> Account:
    """Parse and canonicalize an account id on whatever chain it names."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ACCOUNT_LENGTH:
        raise InvalidAccount("invalid_account", "account must be a CAIP-10 id or did:key")
    family = _family_of_id(text)
    return family.account(*family.split_id(text))


def parse_account(text: str, allowed_chains: frozenset[str]) -> Account:
    """Parse and canonicalize an account id; refuse chains not in ``allowed_chains``."""
    account = canonical_account(text)
    if account.caip2 not in allowed_chains:
        raise InvalidAccount("unsupported_account", f"chain {account.caip2} is not allowed")
    return account


def canonical_chain(entry: str) -> str:
    """The canonical CAIP-2 id of a chain entry (``eip155:1``, ``did:key``, …)."""
    family = families().get(entry)
    namespace, reference = (entry, "") if family else entry.partition(":")[::2]
    family = family or families().get(namespace)
    if family is None:
        raise InvalidAccount("unsupported_account", f"chain {entry[:60]!r} is not supported")
    try:
        canonical = family.canonical_chain(reference)
    except InvalidAccount as exc:
        problem = f"chain {entry[:60]!r}: {exc.description}"
        raise InvalidAccount("invalid_account", problem) from None
    return f"{namespace}:{canonical}" if canonical else namespace


def family_for_message(text: str) -> Family:
    """The family whose header the first line of ``text`` carries."""
    first_line = text.split("\n", 1)[0]
    for family in families().values():
        if first_line.endswith(family.header_suffix):
            return family
    raise MalformedMessage("malformed_message", "not a sign-in message of a supported kind")
