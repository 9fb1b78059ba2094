"""Abuse limits, shared by every replica because the counters live in the store.

Each limit is a fixed window counted with :meth:`Store.hit`: the window starts at
the first hit and the counter expires with it, so counters never outlive their
window and the store stays bounded. Refusals are ``RateLimited`` (HTTP 429) with
``Retry-After`` set to the window length, an upper bound on the wait.

* ``/v1/challenge``: requests per client IP and per account per ``rate_window``.
* Outstanding challenges per account and in total: challenges issued within one
  ``challenge_ttl`` window. A fixed window may overlap challenges of the previous
  one, so at most twice the cap is ever live: a bound, not an exact count.
* ``/v1/token``: failed attempts per client IP and per account. An IP over its limit
  is refused before any work is done. An account over its limit answers its *failed*
  attempts with 429 while a valid proof still succeeds: anyone may ask a challenge
  for any account, so a hard block would let a stranger lock the owner out.

Counter keys carry a SHA-256 digest of the IP or account, never the value itself.
IPv6 clients are counted per /64, the block one host usually holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from keyproof.errors import RateLimitCode, RateLimited
from keyproof.stores.base import Kind, Store

__all__ = ["Limits", "RateLimiter", "digest"]


def digest(value: str) -> str:
    """SHA-256 hex digest: how counter keys and the audit log name IPs, accounts, nonces."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers behind every limit; see :class:`~keyproof.server.config.Settings`."""

    window: int = 60
    challenge_per_ip: int = 120
    challenge_per_account: int = 20
    failed_token_per_ip: int = 60
    failed_token_per_account: int = 20
    outstanding_window: int = 300
    outstanding_per_account: int = 50
    outstanding_global: int = 200_000


class RateLimiter:
    """Checks and counts requests against :class:`Limits` in a shared store."""

    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    async def admit_challenge_ip(self, client_ip: str | None) -> None:
        """Count a challenge request from ``client_ip`` (None: an in-process caller)."""
        if client_ip is None:
            return
        limits = self.limits
        await self._count(f"ch:ip:{_client_key(client_ip)}", limits.window, limits.challenge_per_ip)

    async def admit_challenge_account(self, account: str) -> None:
        """Count a challenge for ``account`` against its rate and the outstanding caps."""
        limits = self.limits
        key = digest(account)
        await self._count(f"ch:acct:{key}", limits.window, limits.challenge_per_account)
        await self._count(
            f"out:acct:{key}",
            limits.outstanding_window,
            limits.outstanding_per_account,
            code="too_many_challenges",
        )
        await self._count(
            "out:all", limits.outstanding_window, limits.outstanding_global, "too_many_challenges"
        )

    async def admit_token_ip(self, client_ip: str | None) -> None:
        """Refuse a token attempt from an IP that failed too often in this window."""
        if client_ip is not None:
            await self._check(f"fail:ip:{_client_key(client_ip)}", self.limits.failed_token_per_ip)

    async def record_failure(self, *, client_ip: str | None, account: str | None) -> None:
        """Count one failed token attempt against the IP and, if known, the account.

        Raises ``RateLimited`` when the account has failed too often in this window.
        """
        window = self.limits.window
        if client_ip is not None:
            await self.store.hit(Kind.COUNTER, f"fail:ip:{_client_key(client_ip)}", window)
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
    "too_many_challenges": "too many outstanding challenges",
}


def _client_key(client_ip: str) -> str:
    """Digest of the IPv4 address, or of the /64 an IPv6 address belongs to."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return digest(client_ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return digest(str(address.ipv4_mapped))
        return digest(str(ipaddress.IPv6Network((address, 64), strict=False)))
    return digest(str(address))


def _as_int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
