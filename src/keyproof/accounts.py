"""Account identifiers and the account families that sign in with them (DESIGN §2).

An account is a CAIP-10 id (``eip155:1:0x…``, ``solana:<ref>:<base58>``) or a
``did:key``. Each family (Ethereum, Solana, agent keys) is one ``Family`` object that
lives beside its message format in ``keyproof.messages``: it canonicalizes account
ids, renders and parses its sign-in text and verifies signatures. Families are found
by scanning ``keyproof.messages`` for a module-level ``FAMILY``, so adding one is
adding its modules, nothing else.
"""

from __future__ import annotations

import abc
import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from keyproof.errors import InvalidAccount, MalformedMessage

__all__ = [
    "Account",
    "ChallengeText",
    "Family",
    "SignInMessage",
    "families",
    "family_for_message",
    "parse_account",
]

MAX_ACCOUNT_LENGTH = 200
CAIP10 = re.compile(r"([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32}):([-.%a-zA-Z0-9]{1,128})")


@dataclass(frozen=True, slots=True)
class Account:
    """A canonical account: the token ``sub`` is ``id``."""

    namespace: str
    chain: str
    address: str
    public_key: bytes

    @property
    def id(self) -> str:
        if self.namespace.startswith("did:"):
            return self.address
        return f"{self.namespace}:{self.chain}:{self.address}"

    @property
    def caip2(self) -> str:
        return f"{self.namespace}:{self.chain}" if self.chain else self.namespace


class SignInMessage(Protocol):
    """The view of a parsed sign-in message that the redeem pipeline needs."""

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
    """One account family: its ids, its sign-in text and its signatures."""

    namespace: ClassVar[str]
    """``eip155``, ``solana`` or ``did:key``."""
    header_suffix: ClassVar[str]
    """How the first line of this family's messages ends."""

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


@functools.cache
def families() -> dict[str, Family]:
    """Every family shipped in ``keyproof.messages``, by namespace."""
    import keyproof.messages as package

    found: dict[str, Family] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found[family.namespace] = family
    return found


def parse_account(text: str, allowed_chains: frozenset[str]) -> Account:
    """Parse and canonicalize an account id; refuse chains not in ``allowed_chains``."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ACCOUNT_LENGTH:
        raise InvalidAccount("invalid_account", "account must be a CAIP-10 id or did:key")
    if text.startswith("did:"):
        namespace, chain, address = ":".join(text.split(":", 2)[:2]), "", text
    else:
        match = CAIP10.fullmatch(text)
        if match is None:
            raise InvalidAccount("invalid_account", "account must be a CAIP-10 id or did:key")
        namespace, chain, address = match.groups()
    family = families().get(namespace)
    if family is None:
        raise InvalidAccount("unsupported_account", f"unsupported account type {namespace!r}")
    account = family.account(chain, address)
    if account.caip2 not in allowed_chains and account.namespace not in allowed_chains:
        raise InvalidAccount("unsupported_account", f"chain {account.caip2} is not allowed")
    return account


def family_for_message(text: str) -> Family:
    """The family whose header the first line of ``text`` carries."""
    first_line = text.split("\n", 1)[0]
    for family in families().values():
        if first_line.endswith(family.header_suffix):
            return family
    raise MalformedMessage("malformed_message", "not a sign-in message of a supported kind")
