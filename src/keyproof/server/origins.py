"""Browser origins: the ones allowed to call keyproof (CORS) and the relying parties.

A browser app on its own origin is a **relying party** ``{origin, domain, uri}``: a
challenge requested from that origin carries the party's domain and URI, because a
wallet compares the message's domain with the page the user is on (EIP-4361 §"Security
considerations"; specs/protocol.md §6.1). Origins are compared exactly, as the Fetch
standard serializes them (RFC 6454 §6.2): ``scheme://host[:port]``, lower case, no
default port, no path. Anything else in the settings fails at startup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from keyproof.errors import ConfigurationError, KeyproofError
from keyproof.messages._fields import check_authority, check_uri

__all__ = ["RelyingParty", "canonical_origin", "relying_parties", "relying_parties_json"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PARTY_KEYS = frozenset({"origin", "domain", "uri"})


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """A browser app that signs its users in with keyproof from its own origin."""

    origin: str
    """The page's origin, exactly as browsers send it in ``Origin``."""
    domain: str
    """The EIP-4361 ``domain`` written into its challenges (``host[:port]``)."""
    uri: str
    """The ``URI`` written into its challenges."""


def canonical_origin(text: str) -> str:
    """``text`` if it is a serialized http(s) origin; ``ConfigurationError`` otherwise.

    The error names the spelling a browser would send, so a typo is easy to mend.
    """
    if text == "*":
        raise _invalid("origins are listed exactly: '*' is not allowed")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _invalid(f"origin {text[:80]!r} is not scheme://host[:port]") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        raise _invalid(f"origin {text[:80]!r} must be http(s)://host[:port]")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    spelled = f"{parts.scheme}://{host}"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        spelled += f":{port}"
    if text != spelled:
        raise _invalid(f"origin {text[:80]!r} is not as a browser sends it: {spelled!r}")
    return text


def relying_parties(value: Any) -> tuple[RelyingParty, ...]:
    """Relying parties from a TOML array of tables, or its JSON text (the environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid("relying_parties must be a JSON array of objects") from None
    if not isinstance(value, list | tuple):
        raise _invalid("relying_parties must be an array of {origin, domain, uri} tables")
    parties = tuple(_party(entry) for entry in value)
    origins = [party.origin for party in parties]
    if len(set(origins)) != len(origins):
        raise _invalid("relying_parties lists an origin twice")
    return parties


def relying_parties_json(parties: Iterable[RelyingParty]) -> str:
    """The ``KEYPROOF_RELYING_PARTIES`` text that :func:`relying_parties` reads back."""
    return json.dumps([asdict(party) for party in parties], separators=(",", ":"))


def _party(entry: Any) -> RelyingParty:
    if isinstance(entry, RelyingParty):
        entry = asdict(entry)
    if not isinstance(entry, Mapping) or set(entry) != _PARTY_KEYS:
        raise _invalid("each relying party is a table of exactly origin, domain and uri")
    if not all(isinstance(entry[key], str) for key in _PARTY_KEYS):
        raise _invalid("a relying party's origin, domain and uri are strings")
    origin = canonical_origin(entry["origin"])
    _check(check_authority, entry["domain"], f"relying party {origin}: domain")
    _check(check_uri, entry["uri"], f"relying party {origin}: uri")
    if urlsplit(entry["uri"]).scheme not in _DEFAULT_PORTS:
        raise _invalid(f"relying party {origin}: uri must be an http(s) URL")
    return RelyingParty(origin=origin, domain=entry["domain"], uri=entry["uri"])


def _check(check: Callable[[str], None], value: str, what: str) -> None:
    """Values written into sign-in messages must obey the message grammar."""
    try:
        check(value)
    except KeyproofError as exc:
        raise _invalid(f"{what}: {exc.description}") from None


def _invalid(message: str) -> ConfigurationError:
    return ConfigurationError("invalid_setting", message)
