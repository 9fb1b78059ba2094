"""Token revocation (RFC 7009) and introspection (RFC 7662).

Revocation: whoever holds a token may revoke it; the answer is the same whether the
token was valid, unknown or malformed (RFC 7009 §2.2), so the endpoint is no oracle.
A revoked token's ``jti`` is kept in the store (``Kind.REVOKED``) until the token
could no longer validate anyway (``exp`` plus the verification leeway). A refresh token
(found by lookup, whatever ``token_type_hint`` says) ends its whole session on every
replica; access tokens of a revoked session (their ``sid``) are inactive from then on.

Introspection: a resource server authenticated with configured client credentials
(HTTP Basic, RFC 6749 §2.3.1) learns whether a token is active. Revoked, expired,
malformed and foreign tokens (another issuer, key or audience) are all
``{"active": false}`` with no reason (RFC 7662 §2.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keyproof._time import Clock
from keyproof.errors import ClientAuthenticationFailed, TokenInvalid
from keyproof.server.sessions import Sessions
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Get
from keyproof.tokens import DEFAULT_LEEWAY, confirmation_jkt, verify_access_token

if TYPE_CHECKING:
    from keyproof.server.service import KeySource

__all__ = ["INTROSPECTED_CLAIMS", "IntrospectionClients", "Revocation"]

INTROSPECTED_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
MAX_CREDENTIALS_CHARS = 1024


class Revocation:
    """Revoke and introspect tokens issued by this server."""

    def __init__(
        self,
        store: Store,
        keys: KeySource,
        *,
        issuer: str,
        audiences: tuple[str, ...],
        sessions: Sessions,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._keys = keys
        self._issuer = issuer
        self._audiences = audiences
        self._clock = clock

    def _verified(self, token: str, leeway: int) -> dict[str, Any]:
        """Claims of a token this server issued for one of its audiences, else raise."""
        keys = self._keys.current().public_keys()
        now = int(self._clock())
        failure = TokenInvalid("token_invalid", "token is for another audience")
        for audience in self._audiences:
            try:
                return verify_access_token(
                    token,
                    keys=keys,
                    issuer=self._issuer,
                    audience=audience,
                    now=now,
                    leeway=leeway,
                )
            except TokenInvalid as exc:
                failure = exc
        raise failure

    async def revoke(self, token: str) -> None:
        """Revoke ``token`` if it is one of ours and still valid; silently ignore others.

        A refresh token ends its session. Either kind is found whatever ``token_type_hint``
        says (RFC 7009 §2.1: the hint only speeds up a lookup, and these two differ in shape).
        """
        if await self._sessions.revoke_token(token):
            return
        try:
            claims = self._verified(token, DEFAULT_LEEWAY)
        except TokenInvalid:
            return
        remaining = int(claims["exp"]) + DEFAULT_LEEWAY - int(self._clock())
        await self._store.add(Kind.REVOKED, claims["jti"], b"1", max(remaining, 1))

    async def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """Whether a verified token was revoked, itself or with its session."""
        reads = [Get(Kind.REVOKED, claims["jti"])]
        if "sid" in claims:
            reads.append(self._sessions.revoked_mark(claims["sid"]))
        outcome = await self._store.batch(reads)  # one round trip for both marks
        return any(mark is not None for mark in outcome.values)

    async def introspect(self, token: str) -> dict[str, Any]:
        """The RFC 7662 response for ``token``: its claims if active, else only ``active``."""
        try:
            claims = self._verified(token, 0)
        except TokenInvalid:
            return {"active": False}
        if await self.is_revoked(claims):
            return {"active": False}
        jkt = confirmation_jkt(claims)
        response: dict[str, Any] = {"active": True, "token_type": "DPoP" if jkt else "Bearer"}
        response.update({name: claims[name] for name in INTROSPECTED_CLAIMS})
        if jkt is not None:  # RFC 9449 §6.2
            response["cnf"] = {"jkt": jkt}
        return response


class IntrospectionClients:
    """Resource servers allowed to introspect: client id -> SHA-256 hex of its secret.

    Only digests are configured, so the configuration holds no secret.
    """

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = dict(digests)

    def __repr__(self) -> str:
        return f"IntrospectionClients({sorted(self._digests)!r})"

    def authenticate(self, authorization: str | None) -> str:
        """The client id of HTTP Basic credentials that match, else ``invalid_client``."""
        client_id, secret = _basic_credentials(authorization)
        expected = self._digests.get(client_id, "0" * 64)
        presented = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
        matches = hmac.compare_digest(presented.encode(), expected.encode())
        if not (matches and client_id in self._digests):
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
        # Header bytes arrive as Latin-1 text; b64decode raises a plain ValueError on
        # non-ASCII, binascii.Error (a ValueError too) on bad base64.
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        raise failed from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise failed
    # RFC 6749 §2.3.1: both parts are form-urlencoded before joining.
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
