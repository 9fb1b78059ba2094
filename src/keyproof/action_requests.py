"""``POST /v1/actions/verify``: signed actions for backends that cannot run Python.

The backend forwards the holder's bearer token and ``{action, signature, expect}``,
where ``expect`` states what it requires: ``{service, audience, type, object, scope}``.
Checks, in this order::

    expect well-formed -> token valid for expect.audience -> not revoked -> token holds
    expect.scope (else ``insufficient_scope``) -> the action (:class:`ActionVerifier`)

so a token without the scope never gets to use up an action id. Every decision is
audited with the token subject and the ``jti`` digest once the token is verified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from keyproof.actions import Action, ActionLimits, ActionVerifier, VerifiedAction
from keyproof.errors import InsufficientScope, InvalidRequest, KeyproofError, TokenInvalid
from keyproof.revocation import VERIFY_LEEWAY, Revocation
from keyproof.tokens import verify_access_token

if TYPE_CHECKING:
    from keyproof.service import Service

__all__ = ["EXPECTED_MEMBERS", "bearer_token", "verify_action_request"]

MAX_AUTHORIZATION_CHARS = 8200
EXPECTED_MEMBERS: Final = ("service", "audience", "type", "object", "scope")
_SCOPE: Final = re.compile(r"[!#-\[\]-~]{1,128}")  # one RFC 6749 scope-token


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1)."""
    if authorization is None or len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise TokenInvalid("token_invalid", "send the access token as a Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise TokenInvalid("token_invalid", "send the access token as a Bearer token")
    return token


@dataclass(slots=True)
class _Decision:
    """What a request has established so far, for its audit line."""

    claims: Mapping[str, Any] | None = None
    action: Action | None = None

    def record(self, service: Service, code: str | None, client_ip: str | None) -> None:
        claims = self.claims or {}
        service.audit.record(
            "action",
            "refused" if code else "success",
            code=code,
            account=claims.get("sub"),
            client_ip=client_ip,
            jti=claims.get("jti"),
            action_id=self.action.id if self.action else None,
        )


async def verify_action_request(
    service: Service,
    authorization: str | None,
    body: Mapping[str, Any],
    *,
    client_ip: str | None = None,
) -> VerifiedAction:
    """The verified action of one request, or raise; the decision is audited either way."""
    decision = _Decision()
    try:
        verified = await _verify_request(service, authorization, body, decision)
    except KeyproofError as refusal:
        decision.record(service, refusal.code, client_ip)
        raise
    decision.record(service, None, client_ip)
    return verified


async def _verify_request(
    service: Service, authorization: str | None, body: Mapping[str, Any], decision: _Decision
) -> VerifiedAction:
    expect = _expectations(body.get("expect"))
    claims = verify_access_token(
        bearer_token(authorization),
        keys=service.keys.public_keys(),
        issuer=service.settings.issuer,
        audience=expect["audience"],
        now=int(service.clock()),
        leeway=VERIFY_LEEWAY,
    )
    decision.claims = claims
    revocation = Revocation(service.settings, service.store, service.keys, service.clock)
    if await revocation.is_revoked(claims["jti"]):
        raise TokenInvalid("token_revoked", "token was revoked")
    if expect["scope"] not in str(claims.get("scope", "")).split():
        raise InsufficientScope("insufficient_scope", f"the token lacks {expect['scope']}")
    decision.action = Action.parse(body.get("action"))
    limits = ActionLimits(
        max_horizon=service.settings.action_horizon,
        max_amount=Decimal(service.settings.action_max_amount),
    )
    verifier = ActionVerifier(
        service.store, service=expect["service"], limits=limits, clock=service.clock
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
