"""The ERC-4361 text layout that SIWE and the did:key format share: render and strict parse.

The layout is the one drawn in :mod:`keyproof.messages.siwe`; a :class:`Layout` sets
the three parts that differ between formats: the text that ends the header line, the
rule for the address line, and whether a ``Chain ID:`` line follows ``Version:``
(:mod:`keyproof.messages.agent` has none).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeVar, cast

from keyproof.accounts import SignInMessage
from keyproof.messages import _fields as f
from keyproof.messages._lines import (
    Lines,
    check_envelope,
    read_resources,
    resource_lines,
    strip_header,
)

__all__ = ["Body", "Layout", "Times", "times"]

_TEXT_FIELDS: Final = ("domain", "address", "uri", "version", "nonce", "issued_at")
_OPTIONAL_TEXT_FIELDS: Final = (
    "scheme",
    "statement",
    "expiration_time",
    "not_before",
    "request_id",
)
_OPTIONAL_LABELS: Final = (
    ("expiration_time", "Expiration Time: "),
    ("not_before", "Not Before: "),
    ("request_id", "Request ID: "),
)

MessageT = TypeVar("MessageT")


class Body(SignInMessage, Protocol):
    """The fields every message in this layout has (read-only, as on a frozen dataclass)."""

    @property
    def scheme(self) -> str | None: ...
    @property
    def address(self) -> str: ...
    @property
    def issued_at(self) -> str: ...
    @property
    def expiration_time(self) -> str | None: ...
    @property
    def not_before(self) -> str | None: ...


def times(message: Body) -> tuple[datetime, datetime | None, datetime | None]:
    """``(issued at, expiration time, not before)`` as aware datetimes."""
    return (
        f.parse_datetime(message.issued_at, "issued at"),
        f.parse_optional_datetime(message.expiration_time, "expiration time"),
        f.parse_optional_datetime(message.not_before, "not before"),
    )


class Times:
    """The ``*_datetime`` accessors of a message in this layout."""

    __slots__ = ()

    def issued_at_datetime(self: Body) -> datetime:
        """``Issued At`` as an aware datetime."""
        return f.parse_datetime(self.issued_at, "issued at")

    def expiration_datetime(self: Body) -> datetime | None:
        """``Expiration Time`` as an aware datetime, if present."""
        return f.parse_optional_datetime(self.expiration_time, "expiration time")

    def not_before_datetime(self: Body) -> datetime | None:
        """``Not Before`` as an aware datetime, if present."""
        return f.parse_optional_datetime(self.not_before, "not before")


@dataclass(frozen=True, slots=True)
class Layout:
    """What one format sets in the shared layout."""

    header_suffix: str
    """Text after the origin on the first line."""
    check_address: Callable[[str], None]
    """Raises ``MalformedMessage`` for an address line this format does not accept."""
    has_chain_id: bool
    """Whether a ``Chain ID:`` line follows ``Version:``."""

    def check(self, message: Body, chain_id: int | None = None) -> None:
        """Validate every field of ``message``; ``chain_id`` is read when the layout has one."""
        f.check_text_types(message, _TEXT_FIELDS, _OPTIONAL_TEXT_FIELDS)
        if self.has_chain_id and type(chain_id) is not int:
            raise f.malformed("chain id", "must be an int")
        f.check_resources_type(message.resources)
        self._check_fields(message, chain_id)
        f.check_message_size(self.render(message, chain_id))

    def _check_fields(self, message: Body, chain_id: int | None) -> None:
        """Each field's grammar, in the order :meth:`check` applies them."""
        if message.scheme is not None:
            f.check_scheme(message.scheme)
        f.check_authority(message.domain)
        self.check_address(message.address)
        if message.statement is not None:
            f.check_statement(message.statement)
        f.check_uri(message.uri)
        if message.version != "1":
            raise f.malformed("version", "must be 1")
        if self.has_chain_id:
            f.parse_chain_id(str(chain_id))
        f.check_nonce(message.nonce)
        times(message)
        if message.request_id is not None:
            f.check_request_id(message.request_id)
        f.check_resources(message.resources)

    def render(self, message: Body, chain_id: int | None = None) -> str:
        """The exact text of ``message``: what :meth:`parse` reads back."""
        scheme, domain = message.scheme, message.domain
        origin = domain if scheme is None else f"{scheme}://{domain}"
        lines = [origin + self.header_suffix, message.address, ""]
        if message.statement is not None:
            lines.append(message.statement)
        lines += ["", f"URI: {message.uri}", f"Version: {message.version}"]
        if self.has_chain_id:
            lines.append(f"Chain ID: {chain_id}")
        lines += [f"Nonce: {message.nonce}", f"Issued At: {message.issued_at}"]
        for name, label in _OPTIONAL_LABELS:
            value = getattr(message, name)
            if value is not None:
                lines.append(label + value)
        return "\n".join(lines + resource_lines(message.resources))

    def parse(self, text: str, message_type: type[MessageT]) -> MessageT:
        """Strictly read ``text`` into a ``message_type`` (a frozen dataclass of its fields).

        Every check of :meth:`check` runs once, in its order: the types and the size are
        the parser's own (text fields, an int chain id, a tuple of resources; the text,
        which is what the message renders, passed the size bound), then the grammar of
        each field on the message built from them.
        """
        text = check_envelope(text)
        fields = self._read_at_once(text)
        if fields is None:  # not in the layout: read line by line for the exact refusal
            fields = self._read_lines(text)
        message = f.unchecked(message_type, fields)
        self._check_fields(cast(Body, message), cast("int | None", fields.get("chain_id")))
        return message

    def _read_at_once(self, text: str) -> dict[str, object] | None:
        """What :meth:`_read_lines` reads from a text that has the layout's shape (one
        regular expression instead of a method call per line), else ``None``."""
        match = _shape(self.header_suffix, self.has_chain_id).fullmatch(text)
        if match is None:
            return None
        resources = tuple(match["resources"].split("\n- ")[1:]) if match["resources"] else ()
        if len(resources) > f.MAX_RESOURCES:
            return None
        fields: dict[str, object] = match.groupdict()
        fields["scheme"], fields["domain"] = _split_origin(match["origin"])
        del fields["origin"]
        if self.has_chain_id:
            fields["chain_id"] = f.parse_chain_id(match["chain_id"])
        fields["resources"] = resources
        return fields

    def _read_lines(self, text: str) -> dict[str, object]:
        lines = Lines(text)
        fields: dict[str, object] = {}
        fields["scheme"], fields["domain"] = self._origin(lines.next("header"))
        fields["address"] = lines.next("address")
        fields["statement"] = _statement(lines)
        fields["uri"] = lines.field("URI: ")
        fields["version"] = lines.field("Version: ")
        if self.has_chain_id:
            fields["chain_id"] = f.parse_chain_id(lines.field("Chain ID: "))
        fields["nonce"] = lines.field("Nonce: ")
        fields["issued_at"] = lines.field("Issued At: ")
        for name, label in _OPTIONAL_LABELS:
            fields[name] = lines.optional(label)
        fields["resources"] = read_resources(lines)
        lines.finish()
        return fields

    def _origin(self, header: str) -> tuple[str | None, str]:
        return _split_origin(strip_header(header, self.header_suffix))


def _split_origin(origin: str) -> tuple[str | None, str]:
    if "://" not in origin:
        return None, origin
    scheme, domain = origin.split("://", 1)
    return scheme, domain


@functools.cache
def _shape(header_suffix: str, has_chain_id: bool) -> re.Pattern[str]:
    """The layout drawn in :mod:`keyproof.messages.siwe` as one regular expression, each
    field's text captured as :meth:`Layout._read_lines` reads it (no statement: the
    address line is followed by two blank lines)."""
    line = r"[^\n]*"
    chain = rf"\nChain ID: (?P<chain_id>{line})" if has_chain_id else ""
    return re.compile(
        rf"(?P<origin>{line}){re.escape(header_suffix)}\n(?P<address>{line})\n\n"
        rf"(?:(?P<statement>[^\n]+)\n)?\nURI: (?P<uri>{line})\nVersion: (?P<version>{line})"
        rf"{chain}\nNonce: (?P<nonce>{line})\nIssued At: (?P<issued_at>{line})"
        rf"(?:\nExpiration Time: (?P<expiration_time>{line}))?"
        rf"(?:\nNot Before: (?P<not_before>{line}))?"
        rf"(?:\nRequest ID: (?P<request_id>{line}))?"
        rf"(?:\nResources:(?P<resources>(?:\n- {line})+))?",
        re.ASCII,
    )


def _statement(lines: Lines) -> str | None:
    lines.blank("line after address")
    statement = lines.next("statement")
    if statement == "":
        return None
    lines.blank("line after statement")
    return statement
