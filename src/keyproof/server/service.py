"""The protocol: issue a challenge, redeem a signed message for a token, refresh a
session (specs/protocol.md §1, "Refresh tokens").

This module is the only place that knows the order of checks on redeem:

    failed attempts of the client and its network under their limits -> size limits
    -> strict parse -> look up binding (read only) -> fields match the binding (the
    DPoP key named in the message too) -> time window -> signature over the exact
    bytes received (offline; a contract wallet on chain only when that fails) ->
    sender constraint (a DPoP proof verified, its nonce and jti checked; or, without
    one, refused if the sign-in is key-bound or a scope needs DPoP) -> atomic consume
    of the nonce -> policy -> mint (+ a session and its refresh token for a
    DPoP-bound sign-in)

and on refresh:

    failed attempts under their limits -> DPoP proof verified (stateless, nonce) ->
    session record looked up (read only; a used token ends the session) -> session
    not revoked -> not past its absolute end -> proof by the session's key -> proof
    jti single-use -> requested scopes within the session's -> policy re-checked ->
    rotation (tombstone, then atomic take: one of concurrent refreshes wins) -> mint

Every redeem decision goes to the audit log; a refusal other than a replay of an
already redeemed message counts as a failed attempt of the client IP and, once the
nonce is known to be bound to that account, of the account (``keyproof.server._ratelimit``);
an account over its limit gets 429 for failed attempts, never for a valid proof.
Challenges are rate-limited per client and network before parsing and counted as
outstanding after; nothing about a challenge is limited per account, whose id is public.

A bad signature therefore never burns a pending nonce, and of several concurrent
redeems of one message exactly one consumes the nonce and gets a token. HTTP, CLI
and the guard are thin adapters around ``Service``.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from keyproof._time import Clock, check_window, rfc3339
from keyproof.accounts import (
    Account,
    ChallengeText,
    Family,
    SignInMessage,
    families,
    family_for_message,
    parse_account,
)
from keyproof.chain import ContractWallets
from keyproof.dpop import JKT_URI_PREFIX, DPoPProof
from keyproof.errors import (
    DPoPNonceRequired,
    DPoPProofInvalid,
    InvalidRequest,
    InvalidScope,
    KeyproofError,
    MalformedSignature,
    NonceRejected,
    OutsideValidity,
    RateLimited,
    SignatureInvalid,
    Unavailable,
)
from keyproof.messages import recap
from keyproof.server._ratelimit import RateLimiter
from keyproof.server._redeem_checks import (
    JKT_PATTERN,
    Binding,
    bounded_bytes,
    check_binding,
    check_signature_length,
    contract_refused,
    narrowed_scopes,
    signed_scopes,
)
from keyproof.server._token_dpop import DPoPNonces, TokenEndpointProofs
from keyproof.server.audit import AuditLog
from keyproof.server.keys import KeySet
from keyproof.server.minting import AccessToken, mint_access_token
from keyproof.server.origins import RelyingParty
from keyproof.server.policy import Policy, parse_scope_string
from keyproof.server.sessions import SessionRecord, Sessions
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Take

__all__ = ["Challenge", "KeySource", "Service", "SignInConfig"]


@dataclass(frozen=True, slots=True)
class SignInConfig:
    """What the service writes into challenges and requires of redeems."""

    issuer: str
    domain: str
    uri: str
    audiences: tuple[str, ...]
    chains: frozenset[str]
    statement: str
    challenge_ttl: int
    token_ttl: int
    clock_skew: int
    policy: Policy
    relying_parties: Mapping[str, RelyingParty] = field(default_factory=dict)
    """Origin -> the browser app whose domain and URI its challenges carry (§6.1)."""
    dpop_nonce: bool = False


class KeySource(Protocol):
    """Where the current signing keys come from: a :class:`KeySet` or a reloading file."""

    def current(self) -> KeySet: ...


@dataclass(frozen=True, slots=True)
class Challenge:
    """What ``POST /v1/challenge`` returns: the text to sign and its nonce."""

    nonce: str
    message: str
    account: str
    scope: str
    issued_at: str
    expires_at: str


@dataclass(slots=True)
class _Attempt:
    """What a redeem has learnt so far, for the audit log and the failure counters."""

    client_ip: str | None
    account: str | None = None
    nonce: str | None = None
    bound: bool = False


class Service:
    """Challenges and redeems for every account family, over one store and key set."""

    def __init__(
        self,
        config: SignInConfig,
        store: Store,
        keys: KeySource,
        *,
        limiter: RateLimiter,
        audit: AuditLog,
        wallets: ContractWallets,
        sessions: Sessions,
        clock: Clock = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._keys = keys
        self._limiter = limiter
        self._audit = audit
        self._wallets = wallets
        self._clock = clock
        nonces = DPoPNonces(keys, enabled=config.dpop_nonce, clock=clock)
        self._dpop = TokenEndpointProofs(store, nonces, issuer=config.issuer, clock=clock)
        self._sessions = sessions

    def dpop_nonce(self) -> str | None:
        """The ``DPoP-Nonce`` token responses carry, or None when nonces are off."""
        return self._dpop.nonces.current()

    # -- challenge ---------------------------------------------------------------------

    async def challenge(
        self,
        account: str,
        scope: str | None = None,
        audience: str | None = None,
        *,
        client_ip: str | None = None,
        origin: str | None = None,
        browser_origin: str | None = None,
        dpop_jkt: str | None = None,
    ) -> Challenge:
        """Bind a fresh nonce to the account, scopes and audience; return the text to sign.

        ``client_ip`` is None only for in-process callers, which have no IP to limit.
        ``browser_origin`` is the request's ``Origin`` header and ``origin`` a relying
        party the client names itself; either selects the domain and URI (§6.1).
        ``dpop_jkt`` binds the sign-in to a DPoP key: the message names it, and only a
        proof by that key redeems it.
        """
        if dpop_jkt is not None and JKT_PATTERN.fullmatch(dpop_jkt) is None:
            raise InvalidRequest("invalid_field", "dpop_jkt must be a SHA-256 JWK thumbprint")
        try:
            parsed = parse_account(account, self._config.chains)
            family = _family(parsed)
            scopes = self._requested_scopes(parsed, scope or "")
            audience = self._audience(audience)
            domain, uri = self._relying_party(origin, browser_origin)
        except KeyproofError:
            # Counted all the same, and a client over its rate is told that first.
            await self._limiter.admit_challenge(client_ip)
            raise
        now = int(self._clock())
        nonce = secrets.token_hex(16)
        binding = Binding(
            namespace=parsed.namespace,
            account=parsed.id,
            chain=parsed.chain,
            domain=domain,
            uri=uri,
            audience=audience,
            scopes=scopes,
            issued_at=now,
            expires_at=now + self._config.challenge_ttl,
            dpop_jkt=dpop_jkt,
        )
        text = family.render(self._challenge_text(parsed, binding, nonce))
        # One batch: the rate counters, the outstanding count, then the challenge.
        entry = Add(Kind.CHALLENGE, nonce, binding.encode(), self._config.challenge_ttl)
        stored = await self._limiter.admit_challenge(client_ip, entry)
        if not stored:  # a 128-bit nonce collided: never hand out a nonce bound elsewhere
            raise Unavailable("store_unavailable", "could not store the challenge; retry")
        return Challenge(
            nonce=nonce,
            message=text,
            account=parsed.id,
            scope=" ".join(scopes),
            issued_at=rfc3339(binding.issued_at),
            expires_at=rfc3339(binding.expires_at),
        )

    def _requested_scopes(self, account: Account, scope: str) -> tuple[str, ...]:
        scopes = parse_scope_string(scope)
        self._config.policy.check_known(scopes)
        grantable = self._config.policy.grantable(account.id, account.namespace)
        refused = [s for s in scopes if s not in grantable]
        if refused:
            raise InvalidScope("scope_not_allowed", f"not granted to this account: {refused[0]}")
        return scopes

    def _audience(self, audience: str | None) -> str:
        if audience is None:
            return self._config.audiences[0]
        if audience not in self._config.audiences:
            raise InvalidScope("invalid_audience", "audience is not served by this issuer")
        return audience

    def _relying_party(self, origin: str | None, browser_origin: str | None) -> tuple[str, str]:
        """``(domain, uri)`` for the challenge: a configured party's, else the default."""
        parties = self._config.relying_parties
        if origin is not None:
            if browser_origin is not None and browser_origin != origin:
                raise InvalidRequest("invalid_field", "origin differs from the Origin header")
            if origin not in parties:
                raise InvalidRequest("invalid_field", "origin is not a configured relying party")
        party = parties.get(origin or browser_origin or "")
        if party is None:
            return self._config.domain, self._config.uri
        return party.domain, party.uri

    def _challenge_text(self, account: Account, binding: Binding, nonce: str) -> ChallengeText:
        statement: str | None = self._config.statement or None
        resources: tuple[str, ...] = ()
        if binding.dpop_jkt is not None:
            resources = (JKT_URI_PREFIX + binding.dpop_jkt,)
        if binding.scopes:  # the ReCap stays the last resource
            resource = recap.encode_recap(binding.audience, binding.scopes)
            statement = recap.statement_with_recap(statement, recap.decode_recap(resource))
            resources = (*resources, resource)
        return ChallengeText(
            account=account,
            domain=binding.domain,
            uri=binding.uri,
            statement=statement,
            nonce=nonce,
            issued_at=rfc3339(binding.issued_at),
            expiration_time=rfc3339(binding.expires_at),
            resources=resources,
        )

    # -- redeem ------------------------------------------------------------------------

    async def redeem(
        self,
        message: str,
        signature: str,
        *,
        client_ip: str | None = None,
        dpop_proof: str | None = None,
    ) -> AccessToken:
        """Check a signed challenge in protocol order; consume its nonce; mint a token.

        With a valid ``dpop_proof`` (the request's ``DPoP`` header) the token is bound to
        the proof's key and comes with a refresh token. Every outcome is audited;
        refusals count against the client's limits.
        """
        attempt = _Attempt(client_ip)
        try:
            token = await self._redeem(message, signature, dpop_proof, attempt)
        except KeyproofError as refusal:
            await self._refused(attempt, refusal)
            raise
        self._audit.record(
            "login",
            "success",
            code=None,
            account=attempt.account,
            client_ip=client_ip,
            nonce=attempt.nonce,
            jti=str(token.claims["jti"]),
        )
        return token

    async def _refused(
        self, attempt: _Attempt, refusal: KeyproofError, event: str = "login"
    ) -> None:
        self._audit.record(
            event,
            "refused",
            code=refusal.code,
            account=attempt.account,
            client_ip=attempt.client_ip,
            nonce=attempt.nonce,
        )
        # A replay proves nothing new and is refused before any signature check;
        # store outages, limits already hit and a request for a fresh DPoP nonce (a
        # normal step of the protocol) are not the client's failures.
        if refusal.code == "nonce_used" or isinstance(
            refusal, RateLimited | Unavailable | DPoPNonceRequired
        ):
            return
        account = attempt.account if attempt.bound else None
        with contextlib.suppress(Unavailable):  # the attempt is refused either way
            await self._limiter.record_failure(client_ip=attempt.client_ip, account=account)

    async def _redeem(
        self, message: str, signature: str, dpop_proof: str | None, attempt: _Attempt
    ) -> AccessToken:
        try:
            signed_bytes = bounded_bytes(message, signature)
            family = family_for_message(message)
            check_signature_length(family, signature)
            parsed, account = family.parse(message)
        except KeyproofError:
            await self._limiter.admit_token(attempt.client_ip)  # over its limits: 429 first
            raise
        # One batch: the failure counters checked, then the binding read.
        (found,) = await self._limiter.admit_token(
            attempt.client_ip, Get(Kind.CHALLENGE, parsed.nonce)
        )
        attempt.account, attempt.nonce = account.id, parsed.nonce
        binding_bytes = found if isinstance(found, bytes) else None
        if binding_bytes is None:
            raise await self._missing_nonce(parsed.nonce)
        binding = Binding.decode(binding_bytes)
        check_binding(parsed, account, binding)
        attempt.bound = True
        signed = signed_scopes(parsed, binding)
        self._check_times(parsed, binding)
        await self._verify_signature(family, account, signed_bytes, signature)
        proof = await self._sender_constraint(binding, signed, dpop_proof)
        await self._consume(parsed.nonce, binding_bytes)
        granted = self._granted(account, binding, signed)
        if proof is None:
            return self._mint(account.id, binding.audience, granted)
        record, refresh_token = await self._sessions.start(
            sub=account.id, audience=binding.audience, scopes=granted, jkt=proof.jkt
        )
        token = self._mint(account.id, binding.audience, granted, record)
        return replace(token, refresh_token=refresh_token)

    async def _sender_constraint(
        self, binding: Binding, signed: frozenset[str], dpop_proof: str | None
    ) -> DPoPProof | None:
        """The request's DPoP proof, checked and used up; None for a bearer sign-in,
        which is refused when the sign-in is key-bound or a scope needs DPoP."""
        if dpop_proof is None:
            policy = self._config.policy
            asked = signed & set(binding.scopes)
            if binding.dpop_jkt is None and not policy.needs_dpop(asked):
                return None
            what = " ".join(sorted(asked & policy.dpop_scopes)) or "every token"
            if binding.dpop_jkt is not None:
                what = "a sign-in bound to a DPoP key"
            raise DPoPProofInvalid("invalid_dpop_proof", f"a DPoP proof is required for {what}")
        proof = self._dpop.verify(dpop_proof, jkt=binding.dpop_jkt)
        await self._dpop.use(proof)
        return proof

    def _mint(
        self,
        account_id: str,
        audience: str,
        scopes: tuple[str, ...],
        session: SessionRecord | None = None,
    ) -> AccessToken:
        now = int(self._clock())
        lifetime = self._config.policy.lifetime(scopes, self._config.token_ttl)
        if session is not None:  # no token of a session outlives it (checked live: > now)
            lifetime = min(lifetime, session.expires_at - now)
        return mint_access_token(
            self._keys.current(),
            issuer=self._config.issuer,
            subject=account_id,
            audience=audience,
            scope=" ".join(scopes),
            client_id=account_id,
            lifetime=lifetime,
            now=now,
            jkt=session.jkt if session else None,
            sid=session.sid if session else None,
        )

    # -- refresh -----------------------------------------------------------------------

    async def refresh(
        self,
        refresh_token: str,
        scope: str | None,
        *,
        dpop_proof: str | None,
        client_ip: str | None = None,
    ) -> AccessToken:
        """Rotate a session's refresh token and mint its next access token, in protocol
        order; audited like a sign-in."""
        attempt = _Attempt(client_ip)
        try:
            token = await self._refresh(refresh_token, scope, dpop_proof, attempt)
        except KeyproofError as refusal:
            await self._refused(attempt, refusal, "refresh")
            raise
        jti = str(token.claims["jti"])
        self._audit.record(
            "refresh", "success", code=None, account=attempt.account, client_ip=client_ip, jti=jti
        )
        return token

    async def _refresh(
        self, refresh_token: str, scope: str | None, dpop_proof: str | None, attempt: _Attempt
    ) -> AccessToken:
        await self._limiter.admit_token(attempt.client_ip)
        proof = self._dpop.verify(dpop_proof, jkt=None)
        record = await self._sessions.lookup(refresh_token)
        attempt.account = record.sub
        await self._sessions.check_live(record)
        if proof.jkt != record.jkt:
            raise DPoPProofInvalid("invalid_dpop_proof", "the proof is signed by another key")
        await self._dpop.use(proof)
        scopes = narrowed_scopes(record.scopes, scope)
        account = parse_account(record.sub, self._config.chains)
        grantable = self._config.policy.grantable(account.id, account.namespace)
        granted = tuple(s for s in scopes if s in grantable)
        successor = await self._sessions.rotate(refresh_token, record)
        token = self._mint(record.sub, record.audience, granted, record)
        return replace(token, refresh_token=successor)

    async def _missing_nonce(self, nonce: str) -> NonceRejected:
        if await self._store.get(Kind.USED_NONCE, nonce) is not None:
            return NonceRejected("nonce_used", "this challenge was already redeemed")
        return NonceRejected("nonce_unknown", "unknown or expired challenge")

    def _check_times(self, message: SignInMessage, binding: Binding) -> None:
        now = self._clock()
        skew = self._config.clock_skew
        issued_at = message.issued_at_datetime().timestamp()
        if issued_at > now + skew or issued_at < binding.issued_at - skew:
            raise OutsideValidity("issued_at_invalid", "issued-at outside the challenge window")
        expiration = message.expiration_datetime()
        not_before = message.not_before_datetime()
        check_window(
            now,
            expires_at=min(binding.expires_at, expiration.timestamp() if expiration else math.inf),
            not_before=not_before.timestamp() if not_before else None,
        )

    async def _verify_signature(
        self, family: Family, account: Account, signed: bytes, signature: str
    ) -> None:
        """Offline first; only if that refuses, a contract wallet is asked on chain (§1.2)."""
        try:
            family.verify(account, signed, signature)
        except (MalformedSignature, SignatureInvalid) as offline:
            digest = family.contract_digest(signed)
            if digest is None:
                raise
            await self._wallets.verify(
                account, digest, signature, offline=offline, refused=contract_refused
            )

    async def _consume(self, nonce: str, expected: bytes) -> None:
        # A tombstone lets a replay be told apart from an unknown nonce. It is written
        # before the take so that a concurrent redeem never sees neither.
        tombstone = Add(Kind.USED_NONCE, nonce, b"1", self._config.challenge_ttl)
        outcome = await self._store.batch([tombstone, Take(Kind.CHALLENGE, nonce)])
        taken = outcome.bytes_at(1)
        if taken is None or taken != expected:
            raise NonceRejected("nonce_used", "this challenge was already redeemed")

    def _granted(
        self, account: Account, binding: Binding, signed: frozenset[str]
    ) -> tuple[str, ...]:
        policy = self._config.policy.grantable(account.id, account.namespace)
        return tuple(sorted(signed & set(binding.scopes) & policy))


def _family(account: Account) -> Family:
    return families()[account.namespace]
