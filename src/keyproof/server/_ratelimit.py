"""Abuse limits that a stranger cannot turn against an account (specs/protocol.md §9).

An account id is public, so every hard limit is keyed on the sender's side of the
connection, never on the account: a flood for someone's address spends the sender's
own budget and leaves the owner's untouched. The counters live in the store, so
replicas share them; each is a fixed window counted with :meth:`Store.hit`, expiring
with its window, so counters never outlive it.

* A client is its IPv4 address, or its IPv6 /64 inside its /48 network (RFC 6177: one
  site's allocation, 65 536 /64s for the price of one address). IPv6 clients are counted
  at both levels, the /48 first, so a flood from one /48 is refused at its network
  counter before it can mint a counter per /64.
* ``/v1/challenge``: requests per client and per network per ``window``.
* Outstanding challenges: counted in total per ``outstanding_window`` (the challenge
  TTL). Past ``outstanding_global`` the server is under pressure and each network
  (an IPv4 address, an IPv6 /48) gets **one** challenge per window from then on instead
  of none: a flood from N networks leaves at most ``2 * (outstanding_global + N)``
  challenges in the store (a challenge may outlive the window that admitted it), while
  a user on any other network still gets the one challenge a sign-in needs.
* ``/v1/token``: failed attempts per client and per network; over either, a request is
  refused before any work is done. Per account only failures are refused
  (:meth:`RateLimiter.record_failure`), so a valid proof always succeeds.

Refusals are ``RateLimited`` (HTTP 429) with ``Retry-After`` set to the window length,
an upper bound on the wait. Counter keys carry a SHA-256 digest of the network, client
or account, never the value itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from keyproof.errors import RateLimitCode, RateLimited
from keyproof.stores.base import Kind, Store

__all__ = ["Limits", "RateLimiter", "digest"]

IPV6_CLIENT_PREFIX = 64
IPV6_NETWORK_PREFIX = 48


def digest(value: str) -> str:
    """SHA-256 hex digest: how counter keys and the audit log name IPs, accounts, nonces."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers behind every limit; see :class:`~keyproof.server.config.Settings`."""

    window: int = 60
    challenge_per_ip: int = 120
    challenge_per_network: int = 960
    failed_token_per_ip: int = 60
    failed_token_per_network: int = 480
    failed_token_per_account: int = 20
    outstanding_window: int = 300
    outstanding_global: int = 200_000


class RateLimiter:
    """Checks and counts requests against :class:`Limits` in a shared store.

    ``client_ip`` None means an in-process caller, which has no network to limit.
    """

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    async def admit_challenge(self, client_ip: str | None) -> None:
        """Count a challenge request against its network's and client's rates."""
        limits = self.limits
        for key, limit in _keyed(client_ip, limits.challenge_per_network, limits.challenge_per_ip):
            await self._count(f"ch:{key}", limits.window, limit)

    async def admit_outstanding(self, client_ip: str | None) -> None:
        """Count one more outstanding challenge; under pressure, one per network per window."""
        if client_ip is None:
            return
        window, cap = self.limits.outstanding_window, self.limits.outstanding_global
        if await self.store.hit(Kind.COUNTER, "out:all", window) <= cap:
            return
        network = _client_keys(client_ip)[0]
        await self._count(f"out:{network}", window, 1, "too_many_challenges")

    async def admit_token(self, client_ip: str | None) -> None:
        """Refuse a token attempt from a client or network that failed too often."""
        limits = self.limits
        for key, limit in _keyed(
            client_ip, limits.failed_token_per_network, limits.failed_token_per_ip
        ):
            await self._check(f"fail:{key}", limit)

    async def record_failure(self, *, client_ip: str | None, account: str | None) -> None:
        """Count one failed token attempt against the client, its network and the account.

        Raises ``RateLimited`` when the account has failed too often in this window.
        """
        window = self.limits.window
        if client_ip is not None:
            for key in _client_keys(client_ip):
                await self.store.hit(Kind.COUNTER, f"fail:{key}", window)
        if account is not None:
            await self._count(
                f"fail:acct:{digest(account)}", window, self.limits.failed_token_per_account
            )

    async def _count(
        self, key: str, window: int, limit: int, code: RateLimitCode = "rate_limited"
    ) -> None:
        if await self.store.hit(Kind.COUNTER, key, window) > limit:
            raise RateLimited(code, _DESCRIPTIONS[code], retry_after=window)

    async def _check(self, key: str, limit: int) -> None:
        current = await self.store.get(Kind.COUNTER, key)
        if current is not None and _as_int(current) >= limit:
            raise RateLimited(
                "rate_limited", "too many failed attempts", retry_after=self.limits.window
            )


_DESCRIPTIONS: dict[RateLimitCode, str] = {
    "rate_limited": "too many requests",
    "too_many_challenges": "too many outstanding challenges; retry later",
}


def _client_keys(client_ip: str) -> tuple[str, ...]:
    """Counter names of a client, widest first: ``net:`` its /48 and ``ip:`` its /64
    for IPv6, ``ip:`` the address for IPv4 (the address is its own network)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return (f"ip:{digest(client_ip)}",)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return (f"ip:{digest(str(address))}",)
    network = ipaddress.IPv6Network((address, IPV6_NETWORK_PREFIX), strict=False)
    client = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
    return (f"net:{digest(str(network))}", f"ip:{digest(str(client))}")


def _keyed(client_ip: str | None, per_network: int, per_ip: int) -> list[tuple[str, int]]:
    """``(counter name, limit)`` of each level of the client, widest first."""
    if client_ip is None:
        return []
    return [
        (key, per_network if key.startswith("net:") else per_ip) for key in _client_keys(client_ip)
    ]


def _as_int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
