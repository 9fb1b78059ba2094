"""The protocol: issue a challenge, redeem a signed message for a token (DESIGN §1).

This module is the only place that knows the order of checks on redeem:

    failed attempts of the client IP under its limit -> size limits -> strict parse
    -> look up binding (read only) -> fields match the binding -> time window ->
    signature over the exact bytes received -> atomic consume of the nonce -> policy
    -> mint

Every redeem decision goes to the audit log; a refusal other than a replay of an
already redeemed message counts as a failed attempt of the client IP and, once the
nonce is known to be bound to that account, of the account (``keyproof.ratelimit``);
an account over its limit gets 429 for failed attempts, never for a valid proof.
Challenges are rate-limited per client IP before parsing and per account after.

A bad signature therefore never burns a pending nonce, and of several concurrent
redeems of one message exactly one consumes the nonce and gets a token. HTTP, CLI
and the guard are thin adapters around ``Service``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from keyproof.accounts import (
    Account,
    ChallengeText,
    Family,
    SignInMessage,
    families,
    family_for_message,
    parse_account,
)
from keyproof.audit import AuditLog
from keyproof.config import Settings
from keyproof.errors import (
    BindingMismatch,
    InvalidScope,
    KeyproofError,
    MalformedMessage,
    MalformedSignature,
    NonceRejected,
    OutsideValidity,
    RateLimited,
    Unavailable,
)
from keyproof.keys import KeySet
from keyproof.messages import recap
from keyproof.policy import parse_scope_string
from keyproof.ratelimit import Limits, RateLimiter
from keyproof.stores.base import Kind, Store
from keyproof.tokens import AccessToken, mint_access_token

__all__ = ["Challenge", "Service"]

MAX_MESSAGE_BYTES = 8192
MAX_SIGNATURE_CHARS = 256


@dataclass(frozen=True, slots=True)
class Challenge:
    """What ``POST /v1/challenge`` returns: the text to sign and its nonce."""

    nonce: str
    message: str
    account: str
    scope: str
    issued_at: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class Binding:
    """What a nonce is bound to, kept in the store until it is consumed or expires."""

    namespace: str
    account: str
    chain: str
    domain: str
    uri: str
    audience: str
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Binding:
        fields = json.loads(data)
        fields["scopes"] = tuple(fields["scopes"])
        return cls(**fields)


@dataclass(slots=True)
class _Attempt:
    """What a redeem has learnt so far, for the audit log and the failure counters."""

    client_ip: str | None
    account: str | None = None
    nonce: str | None = None
    bound: bool = False


def rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Service:
    """Challenges and redeems for every account family, over one store and key set."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        keys: KeySet,
        clock: Callable[[], float] = time.time,
        *,
        limiter: RateLimiter | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock
        self.limiter = limiter or RateLimiter(store, Limits.from_settings(settings))
        self.audit = audit or AuditLog.for_settings(settings, clock)
        self._allowed_chains = frozenset(settings.chains)

    # -- challenge ---------------------------------------------------------------------

    async def challenge(
        self,
        account: str,
        scope: str | None = None,
        audience: str | None = None,
        *,
        client_ip: str | None = None,
    ) -> Challenge:
        """Bind a fresh nonce to the account, scopes and audience; return the text to sign.

        ``client_ip`` is None only for in-process callers, which have no IP to limit.
        """
        await self.limiter.admit_challenge_ip(client_ip)
        parsed = parse_account(account, self._allowed_chains)
        family = _family(parsed)
        scopes = self._requested_scopes(parsed, scope or "")
        audience = self._audience(audience)
        await self.limiter.admit_challenge_account(parsed.id)
        now = int(self.clock())
        nonce = secrets.token_hex(16)
        binding = Binding(
            namespace=parsed.namespace,
            account=parsed.id,
            chain=parsed.chain,
            domain=self.settings.domain,
            uri=self.settings.uri,
            audience=audience,
            scopes=scopes,
            issued_at=now,
            expires_at=now + self.settings.challenge_ttl,
        )
        text = family.render(self._challenge_text(parsed, binding, nonce))
        stored = await self.store.add(
            Kind.CHALLENGE, nonce, binding.encode(), self.settings.challenge_ttl
        )
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
        self.settings.policy.check_known(scopes)
        grantable = self.settings.policy.grantable(account.id, account.namespace)
        refused = [s for s in scopes if s not in grantable]
        if refused:
            raise InvalidScope("scope_not_allowed", f"not granted to this account: {refused[0]}")
        return scopes

    def _audience(self, audience: str | None) -> str:
        if audience is None:
            return self.settings.audiences[0]
        if audience not in self.settings.audiences:
            raise InvalidScope("invalid_audience", "audience is not served by this issuer")
        return audience

    def _challenge_text(self, account: Account, binding: Binding, nonce: str) -> ChallengeText:
        statement: str | None = self.settings.statement or None
        resources: tuple[str, ...] = ()
        if binding.scopes:
            resource = recap.encode_recap(binding.audience, binding.scopes)
            statement = recap.statement_with_recap(statement, recap.decode_recap(resource))
            resources = (resource,)
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
        self, message: str, signature: str, *, client_ip: str | None = None
    ) -> AccessToken:
        """Check a signed challenge in protocol order; consume its nonce; mint a token.

        Every outcome is audited; refusals count against the client's limits.
        """
        attempt = _Attempt(client_ip)
        try:
            token = await self._redeem(message, signature, attempt)
        except KeyproofError as refusal:
            await self._refused(attempt, refusal)
            raise
        self.audit.record(
            "login",
            "success",
            code=None,
            account=attempt.account,
            client_ip=client_ip,
            nonce=attempt.nonce,
            jti=str(token.claims["jti"]),
        )
        return token

    async def _refused(self, attempt: _Attempt, refusal: KeyproofError) -> None:
        self.audit.record(
            "login",
            "refused",
            code=refusal.code,
            account=attempt.account,
            client_ip=attempt.client_ip,
            nonce=attempt.nonce,
        )
        # A replay proves nothing new and is refused before any signature check;
        # store outages and limits already hit are not the client's failures.
        if refusal.code == "nonce_used" or isinstance(refusal, RateLimited | Unavailable):
            return
        account = attempt.account if attempt.bound else None
        with contextlib.suppress(Unavailable):  # the attempt is refused either way
            await self.limiter.record_failure(client_ip=attempt.client_ip, account=account)

    async def _redeem(self, message: str, signature: str, attempt: _Attempt) -> AccessToken:
        await self.limiter.admit_token_ip(attempt.client_ip)
        signed_bytes = _bounded_bytes(message, signature)
        family = family_for_message(message)
        parsed, account = family.parse(message)
        attempt.account, attempt.nonce = account.id, parsed.nonce
        binding_bytes = await self.store.get(Kind.CHALLENGE, parsed.nonce)
        if binding_bytes is None:
            raise await self._missing_nonce(parsed.nonce)
        binding = Binding.decode(binding_bytes)
        _check_binding(parsed, account, binding)
        attempt.bound = True
        signed_scopes = _signed_scopes(parsed, binding)
        self._check_times(parsed, binding)
        family.verify(account, signed_bytes, signature)
        await self._consume(parsed.nonce, binding_bytes)
        granted = self._granted(account, binding, signed_scopes)
        lifetime = self.settings.policy.lifetime(granted, self.settings.token_ttl)
        return mint_access_token(
            self.keys,
            issuer=self.settings.issuer,
            subject=account.id,
            audience=binding.audience,
            scope=" ".join(granted),
            client_id=account.id,
            lifetime=lifetime,
            now=int(self.clock()),
        )

    async def _missing_nonce(self, nonce: str) -> NonceRejected:
        if await self.store.get(Kind.USED_NONCE, nonce) is not None:
            return NonceRejected("nonce_used", "this challenge was already redeemed")
        return NonceRejected("nonce_unknown", "unknown or expired challenge")

    def _check_times(self, message: SignInMessage, binding: Binding) -> None:
        now = self.clock()
        skew = self.settings.clock_skew
        issued_at = message.issued_at_datetime().timestamp()
        if issued_at > now + skew or issued_at < binding.issued_at - skew:
            raise OutsideValidity("issued_at_invalid", "issued-at outside the challenge window")
        expiration = message.expiration_datetime()
        if now >= binding.expires_at or (expiration and now >= expiration.timestamp()):
            raise OutsideValidity("message_expired", "the message has expired")
        not_before = message.not_before_datetime()
        if not_before and now < not_before.timestamp():
            raise OutsideValidity("message_not_yet_valid", "the message is not yet valid")

    async def _consume(self, nonce: str, expected: bytes) -> None:
        # A tombstone lets a replay be told apart from an unknown nonce. It is written
        # before the take so that a concurrent redeem never sees neither.
        await self.store.add(Kind.USED_NONCE, nonce, b"1", self.settings.challenge_ttl)
        taken = await self.store.take(Kind.CHALLENGE, nonce)
        if taken is None or taken != expected:
            raise NonceRejected("nonce_used", "this challenge was already redeemed")

    def _granted(
        self, account: Account, binding: Binding, signed: frozenset[str]
    ) -> tuple[str, ...]:
        policy = self.settings.policy.grantable(account.id, account.namespace)
        return tuple(sorted(signed & set(binding.scopes) & policy))


def _family(account: Account) -> Family:
    return families()[account.namespace]


def _bounded_bytes(message: str, signature: str) -> bytes:
    """The exact bytes that were signed, after the size limits on both inputs."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message_too_long", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        encoded = message.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage("malformed_message", "message is not valid Unicode") from None
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("message_too_long", f"message exceeds {MAX_MESSAGE_BYTES} bytes")
    if not signature or len(signature) > MAX_SIGNATURE_CHARS:
        raise MalformedSignature("malformed_signature", "signature has an invalid length")
    return encoded


def _check_binding(message: SignInMessage, account: Account, binding: Binding) -> None:
    checks = (
        ("account_mismatch", account.namespace == binding.namespace),
        ("chain_mismatch", account.chain == binding.chain),
        ("account_mismatch", account.id == binding.account),
        ("domain_mismatch", message.domain == binding.domain),
        # An origin scheme, where the format has one, must be the configured URI's.
        ("domain_mismatch", getattr(message, "scheme", None) in (None, _scheme(binding.uri))),
        ("uri_mismatch", message.uri == binding.uri),
    )
    for code, ok in checks:
        if not ok:
            raise BindingMismatch(code, f"message does not match the challenge ({code})")


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0]


def _signed_scopes(message: SignInMessage, binding: Binding) -> frozenset[str]:
    """Scopes the signer saw: only the ReCap (last resource, stated in the statement)."""
    capability = recap.signed_capability(message.statement, message.resources)
    return recap.scopes_of(capability, binding.audience) if capability else frozenset()
