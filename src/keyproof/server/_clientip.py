"""The client's IP address, for rate limits and the audit log.

The socket peer is the client unless it is one of ``Settings.trusted_proxies``. Only
then is the configured forwarding header (``X-Forwarded-For`` or RFC 7239
``Forwarded``) read, from the right: each trusted proxy appends the address it saw,
so the rightmost hop that is not a trusted proxy is the client. Entries to its left
were written by that client and are ignored, so a client cannot choose its address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CLIENT_IP_SCOPE_KEY", "MAX_HOPS", "UNKNOWN", "ClientIpResolver"]

CLIENT_IP_SCOPE_KEY = "keyproof.client_ip"
MAX_HOPS = 32
UNKNOWN = "unknown"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ClientIpResolver:
    """Resolve an ASGI scope to the client IP, trusting headers only from ``trusted``."""

    def __init__(self, trusted: Sequence[str], header: str = "x-forwarded-for") -> None:
        if header not in {"x-forwarded-for", "forwarded"}:
            raise ValueError("header must be x-forwarded-for or forwarded")
        self._trusted: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in trusted
        )
        self._header = header.encode("ascii")

    def __call__(self, scope: Mapping[str, Any]) -> str:
        """The client of the request; resolved once, then kept in a ``dict`` scope."""
        known = scope.get(CLIENT_IP_SCOPE_KEY)
        if isinstance(known, tuple) and known[0] is self:
            return str(known[1])
        address = self._resolve(scope)
        if isinstance(scope, dict):
            scope[CLIENT_IP_SCOPE_KEY] = (self, address)
        return address

    def _resolve(self, scope: Mapping[str, Any]) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else UNKNOWN
        if not self._trusted or not self._is_trusted(_parse_ip(peer)):
            return _normalized(peer)
        hops = self._hops(scope.get("headers") or ())
        for hop in reversed(hops[-MAX_HOPS:]):
            address = _parse_ip(hop)
            if address is None:
                break  # garbage or an obfuscated id: stop at the last hop we can trust
            if not self._is_trusted(address):
                return str(address)
            peer = str(address)
        return _normalized(peer)

    def _is_trusted(self, address: _Address | None) -> bool:
        return address is not None and any(address in net for net in self._trusted)

    def _hops(self, headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        values = [v.decode("latin-1") for k, v in headers if k.lower() == self._header]
        joined = ",".join(values)
        if self._header == b"forwarded":
            return [_forwarded_for(element) for element in joined.split(",")]
        return [_strip_port(item.strip()) for item in joined.split(",")]


def _forwarded_for(element: str) -> str:
    """The ``for=`` node of one RFC 7239 forwarded-element, without port or quotes."""
    for pair in element.split(";"):
        name, _, value = pair.strip().partition("=")
        if name.strip().lower() == "for":
            return _strip_port(value.strip().strip('"'))
    return ""


def _strip_port(node: str) -> str:
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else ""
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def _parse_ip(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            # A zone names an interface of whoever saw the address, not the client, and
            # is as long as the sender likes: the address alone names the client.
            return ipaddress.IPv6Address(int(address))
    return address


@functools.lru_cache(maxsize=4096)  # a peer's address is parsed once, not per request
def _normalized(peer: str) -> str:
    address = _parse_ip(peer)
    return str(address) if address is not None else peer[:64]
