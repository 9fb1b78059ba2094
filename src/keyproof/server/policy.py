"""Which scopes an account may be granted, and for how long (specs/protocol.md §4).

A scope is ``namespace:name``. The policy lists every scope the deployment knows;
grants name known scopes or, where the policy says so, ``namespace:*``. Matching is
exact: no case folding, no other wildcards. A token carries ``signed ∩ granted``.

A token lives for the shortest lifetime among its granted scopes, so its lifetime is a
function of its scope set that never grows when a scope is added (specs §4).

Sender constraint (specs "DPoP"): a token carrying any of ``dpop_scopes`` is only
issued with a DPoP proof, and with ``dpop_required`` every token is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keyproof.accounts import canonical_account, families
from keyproof.errors import ConfigurationError, InvalidAccount, InvalidScope
from keyproof.tokens import MAX_TOKEN_LIFETIME

__all__ = ["Policy", "parse_scope_string"]

SCOPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}:[a-z0-9][a-z0-9_.-]{0,63}")
GRANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}:(\*|[a-z0-9][a-z0-9_.-]{0,63})")
MAX_SCOPES = 32


def parse_scope_string(text: str) -> tuple[str, ...]:
    """Split an RFC 6749 scope string into sorted unique scopes; raises ``unknown_scope``."""
    if len(text) > MAX_SCOPES * 130:
        raise InvalidScope("unknown_scope", "scope string too long")
    scopes = text.split(" ") if text else []
    if len(scopes) > MAX_SCOPES:
        raise InvalidScope("unknown_scope", f"at most {MAX_SCOPES} scopes")
    for scope in scopes:
        if not SCOPE_PATTERN.fullmatch(scope):
            raise InvalidScope("unknown_scope", f"not a scope (namespace:name): {scope[:40]!r}")
    return tuple(sorted(set(scopes)))


def _grant_set(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError("invalid_policy", f"{where} must be a list of scopes")
    for grant in value:
        if not GRANT_PATTERN.fullmatch(grant):
            raise ConfigurationError("invalid_policy", f"{where}: not a scope: {grant!r}")
    return frozenset(value)


@dataclass(frozen=True)
class Policy:
    """Scope grants: for every account, per account namespace, and per listed account."""

    scopes: frozenset[str] = frozenset({"profile:read"})
    default: frozenset[str] = frozenset({"profile:read"})
    namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    accounts: Mapping[str, frozenset[str]] = field(default_factory=dict)
    lifetimes: Mapping[str, int] = field(default_factory=dict)
    dpop_scopes: frozenset[str] = frozenset()
    dpop_required: bool = False

    def __post_init__(self) -> None:
        _check_namespaces(self.namespaces)
        for account_id in self.accounts:
            _check_account_id(account_id)
        grants = [self.default, *self.namespaces.values(), *self.accounts.values()]
        for grant in (g for group in grants for g in group):
            if not self._is_known_grant(grant):
                raise ConfigurationError("invalid_policy", f"grant of unknown scope {grant!r}")
        for scope, seconds in self.lifetimes.items():
            if scope not in self.scopes:
                raise ConfigurationError("invalid_policy", f"lifetime for unknown scope {scope!r}")
            if not 0 < seconds <= MAX_TOKEN_LIFETIME:
                raise ConfigurationError("invalid_policy", f"lifetime of {scope!r} out of range")
        for scope in self.dpop_scopes - self.scopes:
            raise ConfigurationError("invalid_policy", f"dpop_scopes: unknown scope {scope!r}")

    @classmethod
    def from_toml(cls, table: Mapping[str, Any]) -> Policy:
        """Build from the ``[policy]`` table of the configuration file."""
        unknown = set(table) - {
            "scopes",
            "default",
            "namespaces",
            "accounts",
            "lifetimes",
            "dpop_scopes",
            "dpop_required",
        }
        if unknown:
            raise ConfigurationError("invalid_policy", f"unknown policy keys: {sorted(unknown)}")
        scopes = _grant_set(table.get("scopes", sorted(cls.scopes)), "policy.scopes")
        if any(s.endswith(":*") for s in scopes):
            raise ConfigurationError("invalid_policy", "policy.scopes lists exact scopes only")
        return cls(
            scopes=scopes,
            default=_grant_set(table.get("default", []), "policy.default"),
            namespaces=_grant_table(table.get("namespaces", {}), "policy.namespaces"),
            accounts=_grant_table(table.get("accounts", {}), "policy.accounts"),
            lifetimes=_lifetimes(table.get("lifetimes", {})),
            dpop_scopes=_grant_set(table.get("dpop_scopes", []), "policy.dpop_scopes"),
            dpop_required=_flag(table.get("dpop_required", False), "policy.dpop_required"),
        )

    def _is_known_grant(self, grant: str) -> bool:
        if grant.endswith(":*"):
            prefix = grant[:-1]
            return any(scope.startswith(prefix) for scope in self.scopes)
        return grant in self.scopes

    def check_known(self, scopes: Iterable[str]) -> None:
        """Raise ``unknown_scope`` for any scope the deployment does not define."""
        for scope in scopes:
            if scope not in self.scopes:
                raise InvalidScope("unknown_scope", f"unknown scope {scope!r}")

    def grantable(self, account_id: str, namespace: str) -> frozenset[str]:
        """Every known scope the policy grants this account."""
        grants = self.default | self.namespaces.get(namespace, frozenset())
        grants |= self.accounts.get(account_id, frozenset())
        return frozenset(s for s in self.scopes if _granted(s, grants))

    def needs_dpop(self, scopes: Iterable[str]) -> bool:
        """Whether a token for ``scopes`` may only be issued bound to a DPoP key."""
        return self.dpop_required or not self.dpop_scopes.isdisjoint(scopes)

    def lifetime(self, scopes: Iterable[str], default: int) -> int:
        """The shortest lifetime configured for any of ``scopes``, else ``default``."""
        return min([default, *(self.lifetimes[s] for s in scopes if s in self.lifetimes)])


def _granted(scope: str, grants: frozenset[str]) -> bool:
    namespace = scope.split(":", 1)[0]
    return scope in grants or f"{namespace}:*" in grants


def _check_namespaces(namespaces: Iterable[str]) -> None:
    shipped = families()
    for namespace in namespaces:
        if namespace not in shipped:
            raise ConfigurationError(
                "invalid_policy",
                f"policy.namespaces: unknown namespace {namespace!r}; use one of {sorted(shipped)}",
            )


def _check_account_id(account_id: str) -> None:
    """Refuse anything but a canonical id: any other spelling would never match a ``sub``."""
    # Chains allowed to sign in are a setting, checked against the policy at startup.
    try:
        account = canonical_account(account_id)
    except InvalidAccount as exc:
        raise ConfigurationError(
            "invalid_policy", f"policy.accounts: {account_id[:80]!r}: {exc.description}"
        ) from None
    if account.id != account_id:
        raise ConfigurationError(
            "invalid_policy",
            f"policy.accounts: write {account.id!r}, the canonical form of {account_id!r}",
        )


def _grant_table(value: Any, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise ConfigurationError("invalid_policy", f"{where} must be a table")
    return {str(k): _grant_set(v, f"{where}.{k}") for k, v in value.items()}


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError("invalid_policy", f"{where} must be true or false")
    return value


def _lifetimes(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ConfigurationError("invalid_policy", "policy.lifetimes maps scopes to seconds")
    return {str(k): int(v) for k, v in value.items()}
