"""``POST /v1/actions/verify``: signed actions for backends that cannot run Python.

The backend forwards the holder's token (with the scheme it came with) and ``{action,
signature, expect}``, where ``expect`` states what it requires: ``{service, audience,
type, object, scope}``; for a DPoP-bound token also ``dpop: {proof, method, url}``, the
proof the holder sent the backend with the backend's request method and URL.
Checks, in this order::

    expect well-formed -> token valid for expect.audience -> not revoked, nor its
    session -> presented as its binding requires (a DPoP token: the proof's htm, htu,
    iat, ath and key; its jti once in this server's store) -> token holds expect.scope
    (else ``insufficient_scope``) -> the action (:class:`ActionVerifier`)

so a token without the scope never gets to use up an action id. Every decision is
audited with the token subject and the ``jti`` digest once the token is verified.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from keyproof._httpio import Credentials
from keyproof._time import Clock
from keyproof.actions import Action, ActionLimits, ActionVerifier, VerifiedAction
from keyproof.chain import ContractWallets
from keyproof.dpop import MAX_PROOF_BYTES, ProofReplayCache, check_sender
from keyproof.errors import InsufficientScope, InvalidRequest, KeyproofError, TokenInvalid
from keyproof.server.audit import AuditLog
from keyproof.server.revocation import Revocation
from keyproof.stores.base import Store
from keyproof.tokens import verify_access_token

if TYPE_CHECKING:
    from keyproof.server.service import KeySource

__all__ = ["DPOP_MEMBERS", "EXPECTED_MEMBERS", "ActionRequests"]

EXPECTED_MEMBERS: Final = ("service", "audience", "type", "object", "scope")
DPOP_MEMBERS: Final = ("proof", "method", "url")
_SCOPE: Final = re.compile(r"[!#-\[\]-~]{1,128}")  # one RFC 6749 scope-token


@dataclass(slots=True)
class _Decision:
    """What a request has established so far, for its audit line."""

    claims: Mapping[str, Any] | None = None
    action: Action | None = None

    def record(self, audit: AuditLog, code: str | None, client_ip: str | None) -> None:
        claims = self.claims or {}
        audit.record(
            "action",
            "refused" if code else "success",
            code=code,
            account=claims.get("sub"),
            client_ip=client_ip,
            jti=claims.get("jti"),
            action_id=self.action.id if self.action else None,
        )


class ActionRequests:
    """Verifies ``/v1/actions/verify`` requests against this issuer's tokens."""

    def __init__(
        self,
        store: Store,
        keys: KeySource,
        revocation: Revocation,
        audit: AuditLog,
        *,
        issuer: str,
        limits: ActionLimits,
        wallets: ContractWallets,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._keys = keys
        self._revocation = revocation
        self._audit = audit
        self._issuer = issuer
        self._limits = limits
        self._wallets = wallets
        self._clock = clock
        self._replay = ProofReplayCache(store)

    async def verify(
        self,
        credentials: Credentials | None,
        body: Mapping[str, Any],
        *,
        client_ip: str | None = None,
    ) -> VerifiedAction:
        """The verified action of one request, or raise; the decision is audited either way."""
        decision = _Decision()
        try:
            verified = await self._verify(credentials, body, decision)
        except KeyproofError as refusal:
            decision.record(self._audit, refusal.code, client_ip)
            raise
        decision.record(self._audit, None, client_ip)
        return verified

    async def _verify(
        self, credentials: Credentials | None, body: Mapping[str, Any], decision: _Decision
    ) -> VerifiedAction:
        expect = _expectations(body.get("expect"))
        presented = _presented_proof(body.get("dpop"))
        if credentials is None:
            raise TokenInvalid("token_invalid", "send the access token as a Bearer token")
        claims = verify_access_token(
            credentials.token,
            keys=self._keys.current().public_keys(),
            issuer=self._issuer,
            audience=expect["audience"],
            now=int(self._clock()),
        )
        decision.claims = claims
        if await self._revocation.is_revoked(claims):
            raise TokenInvalid("token_revoked", "token was revoked")
        proof, method, url = presented or (None, "", "")
        await check_sender(
            claims,
            scheme=credentials.scheme,
            token=credentials.token,
            proof=proof,
            method=method,
            url=url,
            now=int(self._clock()),
            replay=self._replay,
        )
        if expect["scope"] not in str(claims.get("scope", "")).split():
            raise InsufficientScope("insufficient_scope", f"the token lacks {expect['scope']}")
        decision.action = Action.parse(body.get("action"))
        verifier = ActionVerifier(
            self._store,
            service=expect["service"],
            limits=self._limits,
            wallets=self._wallets,
            clock=self._clock,
        )
        return await verifier.verify(
            decision.action,
            body.get("signature"),
            claims=claims,
            action_type=expect["type"],
            object_id=expect["object"],
        )


def _expectations(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or set(value) != set(EXPECTED_MEMBERS):
        raise InvalidRequest(
            "invalid_field", "expect must be {service, audience, type, object, scope}"
        )
    if not all(isinstance(value[n], str) and 0 < len(value[n]) <= 256 for n in EXPECTED_MEMBERS):
        raise InvalidRequest("invalid_field", "expect members must be short strings")
    if _SCOPE.fullmatch(value["scope"]) is None:
        raise InvalidRequest("invalid_field", "expect.scope must be one scope")
    return {n: str(value[n]) for n in EXPECTED_MEMBERS}


def _presented_proof(value: Any) -> tuple[str, str, str] | None:
    """``dpop: {proof, method, url}``: what the holder sent the backend, if given."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != set(DPOP_MEMBERS):
        raise InvalidRequest("invalid_field", "dpop must be {proof, method, url}")
    limits = {"proof": MAX_PROOF_BYTES, "method": 16, "url": 2048}
    if not all(isinstance(value[n], str) and 0 < len(value[n]) <= limits[n] for n in limits):
        raise InvalidRequest("invalid_field", "dpop members must be short strings")
    return value["proof"], value["method"], value["url"]
