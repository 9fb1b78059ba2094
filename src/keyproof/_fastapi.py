"""The FastAPI form of the guard: ``Security(KeyproofBearer(backend), scopes=[...])``.

Imported only through ``keyproof.guard.KeyproofBearer``, so services without FastAPI
never load it. The dependency runs the same checks as :class:`KeyproofBackend` plus
the scopes FastAPI collects for the route, answers refusals with keyproof's error body
and the RFC 6750 ``WWW-Authenticate`` challenge, and declares an HTTP bearer scheme so
FastAPI's OpenAPI document shows which routes need which scopes.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import HTTPException, Request
from fastapi.openapi.models import HTTPBearer
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase

from keyproof._httpio import error_body
from keyproof.errors import KeyproofError, TokenInvalid, Unavailable
from keyproof.guard import (
    _NO_CREDENTIALS_CHALLENGE,
    BearerError,
    KeyproofBackend,
    KeyproofUser,
    _insufficient_scope,
    _refusal_status,
    www_authenticate,
)

__all__ = ["KeyproofBearer"]


class KeyproofBearer(SecurityBase):
    """A FastAPI security dependency that yields the :class:`KeyproofUser` of the request."""

    def __init__(
        self,
        backend: KeyproofBackend,
        *,
        scheme_name: str = "keyproof",
        description: str = "A keyproof access token (RFC 9068 JWT).",
    ) -> None:
        self.backend = backend
        self.model = HTTPBearer(bearerFormat="JWT", description=description)
        self.scheme_name = scheme_name

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> KeyproofUser:
        try:
            user = await self.backend.user_of(request)
        except BearerError as exc:
            raise _refusal(exc.error, scheme=exc.scheme) from None
        if user is None:
            no_token = TokenInvalid("token_invalid", "no token")
            raise _refusal(no_token, challenge=_NO_CREDENTIALS_CHALLENGE)
        if any(scope not in user.scopes for scope in security_scopes.scopes):
            missing, params = _insufficient_scope(security_scopes.scopes)
            raise _refusal(missing, params, scheme=user.token_type)
        return user


def _refusal(
    error: KeyproofError,
    params: Mapping[str, str] | None = None,
    *,
    scheme: str = "Bearer",
    challenge: str | None = None,
) -> HTTPException:
    headers = {"Cache-Control": "no-store"}
    challenge = challenge or www_authenticate(error, params, scheme)
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(error.retry_after)
    return HTTPException(_refusal_status(error), detail=error_body(error), headers=headers)
