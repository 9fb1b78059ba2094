"""Field grammar shared by every sign-in text format (SIWE, SIWS, the did:key format).

Each ``check_*`` function takes the exact text of one field and raises
:class:`~keyproof.errors.MalformedMessage` (code ``malformed_message``) naming the field
when it breaks its rule; ``parse_*`` functions also return the typed value.
:func:`check_text_types` and :func:`check_resources_type` check what a constructor
was given before any grammar is applied.

Grammars (ERC-4361 "ABNF Message Format" and the RFCs it cites):

- nonce: ``8*( ALPHA / DIGIT )``, here bounded to 128 characters.
- date-time: RFC 3339 §5.6 ``full-date "T" full-time``; real calendar dates; seconds
  ``00`` to ``59`` (a leap second ``60`` is refused); ``T`` and ``Z`` upper case only, as
  §5.6 allows a specification to require; at most 9 fraction digits.
- URI: RFC 3986 §3 ``scheme ":" hier-part [ "?" query ] [ "#" fragment ]``.
- authority (the ``domain``): RFC 3986 §3.2 ``[ userinfo "@" ] host [ ":" port ]``.
  Stricter than RFC 3986: the host may not be empty and a port, when present, is
  ``1*5DIGIT`` no larger than 65535.
- statement: ``*( reserved / unreserved / " " )``, so printable ASCII without
  ``"`` ``%`` ``<`` ``>`` ``\\`` ``^`` `````` ``{`` ``|`` ``}`` and without LF.
- request id: ``*pchar``.
- chain id: ``1*DIGIT`` without leading zeros, ``1`` to the EIP-2294 bound.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, TypeVar

from keyproof.errors import MalformedMessage

__all__ = [
    "MAX_AUTHORITY",
    "MAX_CHAIN_ID",
    "MAX_MESSAGE_BYTES",
    "MAX_NONCE",
    "MAX_REQUEST_ID",
    "MAX_RESOURCE",
    "MAX_RESOURCES",
    "MAX_SCHEME",
    "MAX_STATEMENT",
    "MAX_URI",
    "check_authority",
    "check_message_size",
    "check_nonce",
    "check_request_id",
    "check_resources",
    "check_resources_type",
    "check_scheme",
    "check_statement",
    "check_text_types",
    "check_uri",
    "malformed",
    "parse_chain_id",
    "parse_datetime",
    "parse_optional_datetime",
    "unchecked",
]

MessageT = TypeVar("MessageT")

MAX_MESSAGE_BYTES: Final = 8192
MAX_NONCE: Final = 128
MAX_SCHEME: Final = 32
MAX_AUTHORITY: Final = 255
MAX_URI: Final = 2048
MAX_RESOURCE: Final = 4096
MAX_RESOURCES: Final = 64
MAX_STATEMENT: Final = 4096
MAX_REQUEST_ID: Final = 256
# EIP-2294: floor(MAX_UINT64 / 2) - 36, the largest chain id usable in EIP-155 `v`.
MAX_CHAIN_ID: Final = 9223372036854775771
_DATETIMES_KEPT: Final = 1024
_VALUES_KEPT: Final = 256
"""Accepted domains and URIs remembered: a service's sign-ins repeat the same few, and
the RFC 3986 grammars are long. A refusal raises and is not kept."""

_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = "|".join(
    (
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    )
)
_IPVFUTURE = rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
_HOST = rf"(?:\[(?:{_IPV6}|{_IPVFUTURE})\]|{_IPV4}|{_REG_NAME})"
_AUTHORITY = rf"(?:{_USERINFO}@)?{_HOST}(?::[0-9]*)?"
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_HIER_PART = (
    rf"(?://{_AUTHORITY}(?:/{_SEGMENT})*"
    rf"|/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
    rf"|{_SEGMENT_NZ}(?:/{_SEGMENT})*"
    r"|)"
)
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_URI = rf"{_SCHEME}:{_HIER_PART}(?:\?{_QUERY})?(?:#{_QUERY})?"

_SCHEME_RE: Final = re.compile(_SCHEME, re.ASCII)
_AUTHORITY_RE: Final = re.compile(
    rf"(?:{_USERINFO}@)?(?P<host>{_HOST})(?::(?P<port>[0-9]*))?", re.ASCII
)
_URI_RE: Final = re.compile(_URI, re.ASCII)
_STATEMENT_RE: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]*", re.ASCII)
_REQUEST_ID_RE: Final = re.compile(rf"{_PCHAR}*", re.ASCII)
_NONCE_RE: Final = re.compile(r"[A-Za-z0-9]{8,128}", re.ASCII)
_CHAIN_ID_RE: Final = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
_DATETIME_RE: Final = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?:(?P<utc>Z)|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))",
    re.ASCII,
)


def unchecked(message_type: type[MessageT], fields: Mapping[str, object]) -> MessageT:
    """A frozen dataclass built from every one of its ``fields`` without running its
    constructor's checks: for a parser, which then checks the fields itself."""
    names = _FIELD_NAMES.get(message_type)
    if names is None:
        names = _FIELD_NAMES[message_type] = tuple(
            field.name
            for field in dataclasses.fields(message_type)  # type: ignore[arg-type]
        )
    message = object.__new__(message_type)
    for name in names:
        object.__setattr__(message, name, fields[name])
    return message


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def malformed(field: str, problem: str) -> MalformedMessage:
    """The error for one field that breaks its grammar."""
    return MalformedMessage("malformed_message", f"{field}: {problem}")


def _bounded(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise malformed(field, f"longer than {limit} characters")


def check_message_size(text: str) -> None:
    """Refuse a message larger than :data:`MAX_MESSAGE_BYTES` UTF-8 bytes."""
    too_long = len(text) > MAX_MESSAGE_BYTES
    if not too_long and not text.isascii():
        too_long = len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    if too_long:
        raise MalformedMessage(
            "message_too_long", f"message is longer than {MAX_MESSAGE_BYTES} bytes"
        )


def check_nonce(value: str, field: str = "nonce") -> None:
    """``8*( ALPHA / DIGIT )``, at most :data:`MAX_NONCE` characters."""
    _bounded(value, field, MAX_NONCE)
    if _NONCE_RE.fullmatch(value) is None:
        raise malformed(field, "must be 8 to 128 ASCII letters or digits")


def check_scheme(value: str, field: str = "scheme") -> None:
    """RFC 3986 §3.1 ``scheme``."""
    _bounded(value, field, MAX_SCHEME)
    if _SCHEME_RE.fullmatch(value) is None:
        raise malformed(field, "not an RFC 3986 scheme")


@functools.lru_cache(maxsize=_VALUES_KEPT)
def check_authority(value: str, field: str = "domain") -> None:
    """RFC 3986 §3.2 ``authority`` with a non-empty host and a port in 1..65535."""
    _bounded(value, field, MAX_AUTHORITY)
    match = _AUTHORITY_RE.fullmatch(value)
    if match is None:
        raise malformed(field, "not an RFC 3986 authority")
    if not match["host"]:
        raise malformed(field, "empty host")
    port = match["port"]
    if port is not None and not (0 < len(port) <= 5 and 0 < int(port) <= 65535):
        raise malformed(field, "port out of range")


@functools.lru_cache(maxsize=_VALUES_KEPT)
def check_uri(value: str, field: str = "uri", limit: int = MAX_URI) -> None:
    """RFC 3986 §3 ``URI`` (absolute, fragment allowed)."""
    _bounded(value, field, limit)
    if _URI_RE.fullmatch(value) is None:
        raise malformed(field, "not an RFC 3986 URI")


def check_resources(values: tuple[str, ...], field: str = "resources") -> None:
    """At most :data:`MAX_RESOURCES` entries, each an RFC 3986 URI."""
    if len(values) > MAX_RESOURCES:
        raise malformed(field, f"more than {MAX_RESOURCES} entries")
    for index, value in enumerate(values):
        check_uri(value, f"{field}[{index}]", MAX_RESOURCE)


def check_text_types(
    message: object, required: Iterable[str], optional: Iterable[str] = ()
) -> None:
    """Each ``required`` attribute of ``message`` is text; each ``optional`` one text or None."""
    for name in required:
        if not isinstance(getattr(message, name), str):
            raise malformed(name, "must be text")
    for name in optional:
        if not isinstance(getattr(message, name), str | None):
            raise malformed(name, "must be text or None")


def check_resources_type(resources: object, field: str = "resources") -> None:
    """``resources`` is a tuple of text."""
    if not isinstance(resources, tuple) or not all(isinstance(r, str) for r in resources):
        raise malformed(field, "must be a tuple of text")


def check_statement(value: str, field: str = "statement") -> None:
    """``1*( reserved / unreserved / " " )``: non-empty printable ASCII, no LF."""
    _bounded(value, field, MAX_STATEMENT)
    if not value:
        raise malformed(field, "empty; leave it out instead")
    if _STATEMENT_RE.fullmatch(value) is None:
        raise malformed(field, "character outside RFC 3986 reserved / unreserved / space")


def check_request_id(value: str, field: str = "request id") -> None:
    """``*pchar``, at most :data:`MAX_REQUEST_ID` characters."""
    _bounded(value, field, MAX_REQUEST_ID)
    if _REQUEST_ID_RE.fullmatch(value) is None:
        raise malformed(field, "character outside RFC 3986 pchar")


def parse_chain_id(value: str, field: str = "chain id") -> int:
    """``1*DIGIT`` without leading zeros, in ``1..MAX_CHAIN_ID``."""
    if _CHAIN_ID_RE.fullmatch(value) is None or int(value) > MAX_CHAIN_ID:
        raise malformed(field, "must be a decimal integer from 1 to the EIP-2294 maximum")
    return int(value)


def parse_datetime(value: str, field: str) -> datetime:
    """RFC 3339 ``date-time`` as an aware :class:`datetime` (fraction cut to microseconds)."""
    return _parse_datetime(value, field)


@functools.lru_cache(maxsize=_DATETIMES_KEPT)
def _parse_datetime(value: str, field: str) -> datetime:
    """A sign-in's times are read at parse and again when checked; a refusal raises and
    is not kept."""
    match = _DATETIME_RE.fullmatch(value)
    if match is None:
        raise malformed(field, "not an RFC 3339 date-time")
    offset = _offset(match, field)
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        moment = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction),
            tzinfo=offset,
        )
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise malformed(field, "not a real date and time") from None
    return moment


def parse_optional_datetime(value: str | None, field: str) -> datetime | None:
    """:func:`parse_datetime`, or ``None`` for a field that is left out."""
    return None if value is None else parse_datetime(value, field)


def _offset(match: re.Match[str], field: str) -> timezone:
    if match["utc"]:
        return UTC
    hours, minutes = int(match["off_hour"]), int(match["off_minute"])
    if hours > 23 or minutes > 59:
        raise malformed(field, "time offset out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if match["sign"] == "-" else delta)
