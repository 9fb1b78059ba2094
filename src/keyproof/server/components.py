"""The composition root: every collaborator of the issuer, built once from ``Settings``.

This is the one place that reads :class:`~keyproof.server.config.Settings` to configure
components; each component takes only its own small configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from keyproof._time import Clock
from keyproof.actions import ActionLimits
from keyproof.chain import ContractWallets, RpcObserver
from keyproof.server._action_requests import ActionRequests
from keyproof.server._ratelimit import Limits, RateLimiter
from keyproof.server.audit import AUDIT_FILE_NAME, AuditLog
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, KeyFile, KeySet
from keyproof.server.revocation import IntrospectionClients, Revocation
from keyproof.server.service import KeySource, Service, SignInConfig
from keyproof.server.sessions import Sessions
from keyproof.stores import open_store
from keyproof.stores.base import Store

__all__ = ["Components", "build_components", "build_service"]


@dataclass(frozen=True, slots=True)
class Components:
    """Everything the HTTP app serves with, wired to one store and one key source."""

    store: Store
    keys: KeySource
    key_file: KeyFile | None
    """The reloading key file, when keys come from the data directory."""
    audit: AuditLog
    service: Service
    revocation: Revocation
    introspection_clients: IntrospectionClients
    actions: ActionRequests
    wallets: ContractWallets
    """Asks the chains about contract-wallet signatures; close it with ``aclose()``."""


def _sign_in_config(settings: Settings) -> SignInConfig:
    return SignInConfig(
        issuer=settings.issuer,
        domain=settings.domain,
        uri=settings.uri,
        audiences=settings.audiences,
        chains=frozenset(settings.chains),
        statement=settings.statement,
        challenge_ttl=settings.challenge_ttl,
        token_ttl=settings.token_ttl,
        clock_skew=settings.clock_skew,
        policy=settings.policy,
        relying_parties={party.origin: party for party in settings.relying_parties},
        dpop_nonce=settings.dpop_nonce,
    )


def _limits(settings: Settings) -> Limits:
    return Limits(
        window=settings.rate_window,
        challenge_per_ip=settings.challenge_limit_per_ip,
        challenge_per_network=settings.challenge_limit_per_network,
        failed_token_per_ip=settings.failed_token_limit_per_ip,
        failed_token_per_network=settings.failed_token_limit_per_network,
        failed_token_per_account=settings.failed_token_limit_per_account,
        outstanding_window=settings.challenge_ttl,
        outstanding_global=settings.max_challenges,
    )


def _audit_log(settings: Settings, clock: Clock) -> AuditLog:
    return AuditLog(settings.audit_log or settings.data_dir / AUDIT_FILE_NAME, clock)


def build_service(
    settings: Settings,
    store: Store,
    keys: KeySource,
    clock: Clock = time.time,
    *,
    audit: AuditLog | None = None,
    wallets: ContractWallets | None = None,
    sessions: Sessions | None = None,
) -> Service:
    """The sign-in service alone, for embedding and tests.

    ``wallets`` is built from the settings unless given; the caller closes it.
    """
    return Service(
        _sign_in_config(settings),
        store,
        keys,
        limiter=RateLimiter(store, _limits(settings)),
        audit=audit or _audit_log(settings, clock),
        wallets=wallets or ContractWallets(settings.contract_wallets()),
        clock=clock,
        sessions=sessions or _sessions(settings, store, clock),
    )


def _sessions(settings: Settings, store: Store, clock: Clock) -> Sessions:
    return Sessions(
        store, ttl=settings.session_ttl, idle_ttl=settings.session_idle_ttl, clock=clock
    )


def build_components(
    settings: Settings,
    *,
    store: Store | None = None,
    keys: KeySet | None = None,
    clock: Clock = time.time,
    rpc_observer: RpcObserver | None = None,
) -> Components:
    """Open the store and keys the settings name, unless given, and wire everything.

    ``rpc_observer`` is told of every call to a chain (the app's metrics).
    """
    opened = store or open_store(settings.store, clock=clock)
    key_file: KeyFile | None = None
    source: KeySource
    if keys is None:
        source = key_file = KeyFile(settings.data_dir / KEY_FILE_NAME, clock)
    else:
        source = keys
    audit = _audit_log(settings, clock)
    sessions = _sessions(settings, opened, clock)
    revocation = Revocation(
        opened,
        source,
        issuer=settings.issuer,
        audiences=settings.audiences,
        sessions=sessions,
        clock=clock,
    )
    action_limits = ActionLimits(
        max_horizon=settings.action_horizon, max_amount=Decimal(settings.action_max_amount)
    )
    wallets = ContractWallets(settings.contract_wallets(), observer=rpc_observer)
    return Components(
        store=opened,
        keys=source,
        key_file=key_file,
        audit=audit,
        service=build_service(
            settings, opened, source, clock, audit=audit, wallets=wallets, sessions=sessions
        ),
        revocation=revocation,
        introspection_clients=IntrospectionClients(settings.introspection_clients),
        actions=ActionRequests(
            opened,
            source,
            revocation,
            audit,
            issuer=settings.issuer,
            limits=action_limits,
            wallets=wallets,
            clock=clock,
        ),
        wallets=wallets,
    )
