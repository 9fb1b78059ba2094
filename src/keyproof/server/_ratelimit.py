"""Abuse limits that a stranger cannot turn against an account (specs/protocol.md §9).

An account id is public, so every hard limit is keyed on the sender's side of the
connection, never on the account: a flood for someone's address spends the sender's
own budget and leaves the owner's untouched. The counters live in the store, so
replicas share them; each is a fixed window counted like :meth:`Store.hit`, expiring
with its window, so counters never outlive it. A step's counters travel to the store
in one batch with the work they guard (:meth:`Store.batch`), stopping at the first
over its limit, so a refused request still does nothing past its refusal.

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

import functools
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from keyproof.errors import RateLimitCode, RateLimited
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Hit, Op, Value

__all__ = ["Limits", "RateLimiter", "digest"]

IPV6_CLIENT_PREFIX = 64
IPV6_NETWORK_PREFIX = 48
CLIENT_KEYS_CACHED = 4096
"""Recent clients whose counter names are kept: parsing and hashing an address costs
more than the rest of a request's counting."""


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

    ``client_ip`` None means an in-process caller, which has no network to limit. The
    counters of a step go to the store in one batch with the operations they guard
    (``then``), which run only once every limit has passed.
    """

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    async def admit_challenge(self, client_ip: str | None, challenge: Add | None = None) -> bool:
        """Count a challenge request against its network's and client's rates; then count
        ``challenge`` as outstanding (under pressure, one per network per window) and
        store it. True if it was stored; False without one or on a colliding key."""
        limits = self.limits
        guards = [
            _Guard(Hit(Kind.COUNTER, f"ch:{key}", limits.window, limit), limits.window)
            for key, limit in _keyed(
                client_ip, limits.challenge_per_network, limits.challenge_per_ip
            )
        ]
        if challenge is None:
            await self._run(guards)
            return False
        if client_ip is not None:
            window, cap = limits.outstanding_window, limits.outstanding_global
            network = Hit(Kind.COUNTER, f"out:{_client_keys(client_ip)[0]}", window, 1)
            total = Hit(Kind.COUNTER, "out:all", window, cap, over=network)
            guards.append(_Guard(total, window, "too_many_challenges"))
        (stored,) = await self._run(guards, challenge)
        return bool(stored)

    async def admit_token(self, client_ip: str | None, *then: Op) -> tuple[Value, ...]:
        """Refuse a token attempt from a client or network that failed too often; then
        run ``then``. Returns the values of ``then``."""
        limits = self.limits
        guards = [
            _Guard(Get(Kind.COUNTER, f"fail:{key}", below=limit), limits.window, failed=True)
            for key, limit in _keyed(
                client_ip, limits.failed_token_per_network, limits.failed_token_per_ip
            )
        ]
        return await self._run(guards, *then)

    async def record_failure(self, *, client_ip: str | None, account: str | None) -> None:
        """Count one failed token attempt against the client, its network and the account.

        Raises ``RateLimited`` when the account has failed too often in this window.
        """
        window = self.limits.window
        keys = _client_keys(client_ip) if client_ip is not None else ()
        guards = [_Guard(Hit(Kind.COUNTER, f"fail:{key}", window), window) for key in keys]
        if account is not None:
            key, limit = f"fail:acct:{digest(account)}", self.limits.failed_token_per_account
            guards.append(_Guard(Hit(Kind.COUNTER, key, window, limit), window))
        if guards:
            await self._run(guards)

    async def _run(self, guards: list[_Guard], *then: Op) -> tuple[Value, ...]:
        outcome = await self.store.batch([guard.op for guard in guards] + list(then))
        stopped = len(outcome.values) - 1
        if outcome.refused and stopped < len(guards):
            raise guards[stopped].refusal()
        return outcome.values[len(guards) :]


class _Guard(NamedTuple):
    """A counter operation of a batch and the refusal it stands for."""

    op: Hit | Get
    retry_after: int
    code: RateLimitCode = "rate_limited"
    failed: bool = False

    def refusal(self) -> RateLimited:
        description = "too many failed attempts" if self.failed else _DESCRIPTIONS[self.code]
        return RateLimited(self.code, description, retry_after=self.retry_after)


_DESCRIPTIONS: dict[RateLimitCode, str] = {
    "rate_limited": "too many requests",
    "too_many_challenges": "too many outstanding challenges; retry later",
}


@functools.lru_cache(maxsize=CLIENT_KEYS_CACHED)
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
