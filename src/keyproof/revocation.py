"""Token revocation (RFC 7009) and introspection (RFC 7662).

Revocation: whoever holds a token may revoke it; the answer is the same whether the
token was valid, unknown or malformed (RFC 7009 §2.2), so the endpoint is no oracle.
A revoked token's ``jti`` is kept in the store (``Kind.REVOKED``) until the token
could no longer validate anyway (``exp`` plus the verification leeway).

Introspection: a resource server authenticated with configured client credentials
(HTTP Basic, RFC 6749 §2.3.1) learns whether a token is active. Revoked, expired,
malformed and foreign tokens (another issuer, key or audience) are all
``{"active": false}`` with no reason (RFC 7662 §2.2).
"""

from __future__ import annotations

import base64
import binascii
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from keyproof.config import Settings
from keyproof.errors import ClientAuthenticationFailed, TokenInvalid
from keyproof.keys import KeySet
from keyproof.stores.base import Kind, Store
from keyproof.tokens import verify_access_token

__all__ = ["INTROSPECTED_CLAIMS", "VERIFY_LEEWAY", "Revocation", "authenticate_client"]

VERIFY_LEEWAY = 30
"""The leeway resource servers apply to ``exp``; a revocation outlives it."""
INTROSPECTED_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
MAX_CREDENTIALS_CHARS = 1024


class Revocation:
    """Revoke and introspect tokens issued by this server."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        keys: KeySet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.clock = clock

    def _verified(self, token: str, leeway: int) -> dict[str, Any]:
        """Claims of a token this server issued for one of its audiences, else raise."""
        keys = self.keys.public_keys()
        now = int(self.clock())
        failure = TokenInvalid("token_invalid", "token is for another audience")
        for audience in self.settings.audiences:
            try:
                return verify_access_token(
                    token,
                    keys=keys,
                    issuer=self.settings.issuer,
                    audience=audience,
                    now=now,
                    leeway=leeway,
                )
            except TokenInvalid as exc:
                failure = exc
        raise failure

    async def revoke(self, token: str) -> None:
        """Revoke ``token`` if it is one of ours and still valid; silently ignore others."""
        try:
            claims = self._verified(token, VERIFY_LEEWAY)
        except TokenInvalid:
            return
        remaining = int(claims["exp"]) + VERIFY_LEEWAY - int(self.clock())
        await self.store.add(Kind.REVOKED, claims["jti"], b"1", max(remaining, 1))

    async def is_revoked(self, jti: str) -> bool:
        return await self.store.get(Kind.REVOKED, jti) is not None

    async def introspect(self, token: str) -> dict[str, Any]:
        """The RFC 7662 response for ``token``: its claims if active, else only ``active``."""
        try:
            claims = self._verified(token, 0)
        except TokenInvalid:
            return {"active": False}
        if await self.is_revoked(claims["jti"]):
            return {"active": False}
        response: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        response.update({name: claims[name] for name in INTROSPECTED_CLAIMS})
        return response


def authenticate_client(settings: Settings, authorization: str | None) -> str:
    """The client id from HTTP Basic credentials that match the configuration, else raise."""
    client_id, secret = _basic_credentials(authorization)
    if not settings.introspection_client_valid(client_id, secret):
        raise ClientAuthenticationFailed("invalid_client", "client authentication failed")
    return client_id


def _basic_credentials(authorization: str | None) -> tuple[str, str]:
    failed = ClientAuthenticationFailed("invalid_client", "send HTTP Basic client credentials")
    if authorization is None or len(authorization) > MAX_CREDENTIALS_CHARS:
        raise failed
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise failed
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise failed from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise failed
    # RFC 6749 §2.3.1: both parts are form-urlencoded before joining.
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
