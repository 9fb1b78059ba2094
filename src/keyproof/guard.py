"""Protect a Starlette or FastAPI service with keyproof access tokens (RFC 6750).

See specs/protocol.md, "Tokens and resource servers".

::

    backend = KeyproofBackend(issuer=..., audience=..., jwks_url=...)
    app = Starlette(routes=..., middleware=[
        Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)])

Starlette's own ``requires("escrow:release")`` then works: ``request.auth.scopes`` are
the token's scopes and ``request.user`` a :class:`KeyproofUser` (``sub``, ``claims``).
Starlette's ``requires`` answers a missing scope with a bare 403; :func:`require_scope`
is a drop-in that answers RFC 6750 §3.1 ``insufficient_scope`` with the required scope
in ``WWW-Authenticate`` (and 401 ``Bearer`` when no token was sent), whatever the
endpoint's signature. With FastAPI, ``Security(KeyproofBearer(backend), scopes=[...])``
gives the same checks as a dependency and shows as a bearer scheme in the OpenAPI
document (:class:`KeyproofBearer` is imported on use, so FastAPI stays optional).
:func:`error_response` and :func:`read_json_object` give a resource server keyproof's
error shape and bounded JSON bodies.

Only the ``Authorization: Bearer`` header is read; a token in the query string is
refused. Keys come only from ``jwks_url``: fetched once, cached for ``max_age``,
refreshed when a token names an unknown ``kid`` at most once per ``refresh_cooldown``;
while no fetch has succeeded yet, requests fail closed and a new fetch is tried at most
once per ``refresh_cooldown`` too. The token header never chooses a key source (``jku``,
``x5u``, ``jwk`` are ignored). Plain ``http://`` key and introspection URLs are refused
unless they point at a loopback host. A refused token gets a fixed description
("invalid token", "token expired"); the reason is logged at debug level only.
Tokens carrying any of ``introspect_scopes`` are also checked at the issuer's
introspection endpoint, so a revoked token fails there; if it cannot be asked the
request fails closed (503).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, get_type_hints

import httpx
import jwt
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from keyproof._httpio import bearer_token, error_response, read_json_object
from keyproof._time import Clock
from keyproof.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    KeyproofError,
    TokenInvalid,
    Unavailable,
)
from keyproof.jwks import JWKSCache, check_url, parse_jwks
from keyproof.tokens import DEFAULT_LEEWAY, MAX_VERIFY_LEEWAY, verify_access_token

if TYPE_CHECKING:
    from keyproof._fastapi import KeyproofBearer

__all__ = [
    "BearerError",
    "JWKSCache",
    "KeyproofBackend",
    "KeyproofBearer",
    "KeyproofUser",
    "error_response",
    "on_error",
    "parse_jwks",
    "read_json_object",
    "require_scope",
    "www_authenticate",
]

logger = logging.getLogger("keyproof.guard")
UNSAFE_IN_QUOTES = re.compile(r'[^ -~]|["\\]')
_P = ParamSpec("_P")


class BearerError(AuthenticationError):
    """A request refused by the guard; :func:`on_error` renders it per RFC 6750 §3."""

    def __init__(self, error: KeyproofError) -> None:
        super().__init__(error.description)
        self.error = error


class KeyproofUser(BaseUser):
    """The authenticated token holder: ``sub`` is the account id, ``claims`` everything."""

    def __init__(self, claims: Mapping[str, Any]) -> None:
        self.claims = dict(claims)
        self.sub: str = self.claims["sub"]

    def __repr__(self) -> str:
        return f"KeyproofUser(sub={self.sub!r})"

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.sub

    @property
    def identity(self) -> str:
        return self.sub

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(str(self.claims["scope"]).split())


# -- the backend -----------------------------------------------------------------------


class KeyproofBackend(AuthenticationBackend):
    """A Starlette ``AuthenticationBackend`` accepting keyproof bearer tokens."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        leeway: int = DEFAULT_LEEWAY,
        refresh_cooldown: float = 30.0,
        clock: Clock = time.time,
        http_client: httpx.AsyncClient | None = None,
        introspect_scopes: Collection[str] = (),
        introspection_url: str | None = None,
        introspection_client_id: str | None = None,
        introspection_client_secret: str | None = None,
    ) -> None:
        if not 0 <= leeway <= MAX_VERIFY_LEEWAY:
            # Key retirement relies on this cap (keyproof.server.keys.RETIRE_AFTER).
            raise ConfigurationError(
                "invalid_setting", f"leeway must be 0..{MAX_VERIFY_LEEWAY} seconds"
            )
        self.issuer = issuer
        self.audience = audience
        self._leeway = leeway
        self._clock = clock
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self.jwks = JWKSCache(
            jwks_url, self._client, clock=clock, refresh_cooldown=refresh_cooldown
        )
        self._introspect_scopes = frozenset(introspect_scopes)
        self._introspection: tuple[str, str] | None = None
        if self._introspect_scopes:
            self._introspection = _introspection_config(
                introspection_url, introspection_client_id, introspection_client_secret
            )

    def __repr__(self) -> str:
        return f"KeyproofBackend(issuer={self.issuer!r}, audience={self.audience!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if the backend created it."""
        if self._owns_client:
            await self._client.aclose()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        """Credentials for a valid bearer token, ``None`` without one, else raise."""
        try:
            token = bearer_token(conn)
            if token is None:
                return None
            claims = await self.verify(token)
        except TokenInvalid as exc:
            logger.debug("token refused: %s (%s)", exc.code, exc.description)
            raise BearerError(_public(exc)) from None
        except (InvalidRequest, Unavailable) as exc:
            raise BearerError(exc) from None
        user = KeyproofUser(claims)
        return AuthCredentials(list(user.scopes)), user

    async def verify(self, token: str) -> dict[str, Any]:
        """Verify ``token`` against the issuer's keys (and introspection if configured)."""
        keys = await self.jwks.keys(_unverified_kid(token))
        claims = verify_access_token(
            token,
            keys=keys,
            issuer=self.issuer,
            audience=self.audience,
            now=int(self._clock()),
            leeway=self._leeway,
        )
        if self._introspection and self._introspect_scopes & set(claims["scope"].split()):
            await self._check_active(token, *self._introspection)
        return claims

    async def _check_active(self, token: str, url: str, authorization: str) -> None:
        try:
            response = await self._client.post(
                url, data={"token": token}, headers={"Authorization": authorization}
            )
            active = response.status_code == 200 and response.json().get("active") is True
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            logger.warning("introspection at %s failed: %s", url, type(exc).__name__)
            raise Unavailable("upstream_unavailable", "token introspection unavailable") from None
        if not active:
            raise TokenInvalid("token_revoked", "token is not active")


def _introspection_config(
    url: str | None, client_id: str | None, secret: str | None
) -> tuple[str, str]:
    if url is None or not client_id or not secret:
        raise ConfigurationError(
            "invalid_setting",
            "introspect_scopes needs introspection_url and client id and secret",
        )
    check_url(url, "introspection_url")
    # RFC 6749 §2.3.1: each part is form-urlencoded before joining.
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return url, "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _public(error: TokenInvalid) -> TokenInvalid:
    """The same code with a fixed description: the reason is no oracle."""
    if error.code == "token_expired":
        return TokenInvalid("token_expired", "token expired")
    if error.code == "token_revoked":
        return TokenInvalid("token_revoked", "invalid token")
    return TokenInvalid("token_invalid", "invalid token")


def _unverified_kid(token: str) -> str | None:
    """The header's ``kid`` only to pick a cached key; verification checks everything."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise TokenInvalid("token_invalid", "malformed token") from None
    return kid if isinstance(kid, str) else None


# -- responses -------------------------------------------------------------------------


def www_authenticate(error: KeyproofError, params: Mapping[str, str] | None = None) -> str | None:
    """The RFC 6750 §3 challenge for a refusal (``None`` for a 503, which carries none).

    ``params`` default to the error's ``error`` and ``error_description``; values lose
    characters a quoted-string cannot carry.
    """
    if isinstance(error, Unavailable):
        return None
    if params is None:
        params = {"error": error.oauth_error, "error_description": error.description}
        if isinstance(error, InvalidRequest):
            params = {"error": "invalid_request"}
    quoted = ", ".join(f'{k}="{UNSAFE_IN_QUOTES.sub("", v)}"' for k, v in params.items())
    return f"Bearer {quoted}" if quoted else "Bearer"


def _bearer_response(error: KeyproofError, params: Mapping[str, str] | None = None) -> Response:
    response = error_response(error)
    challenge = www_authenticate(error, params)
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``AuthenticationMiddleware(on_error=...)``: RFC 6750 error responses."""
    error = exc.error if isinstance(exc, BearerError) else None
    if error is None:
        error = TokenInvalid("token_invalid", "invalid token")
    return _bearer_response(error)


# RFC 6750 §3.1: no error code when the request carried no credentials at all.
_NO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType({})


def _insufficient_scope(needed: Sequence[str]) -> tuple[InsufficientScope, dict[str, str]]:
    """The 403 refusal and its challenge parameters for a missing scope."""
    error = InsufficientScope("insufficient_scope", "token lacks a required scope")
    return error, {"error": "insufficient_scope", "scope": " ".join(needed)}


_REQUEST_PARAMETER = "keyproof_request__"


def _request_of(args: Sequence[Any], kwargs: dict[str, Any]) -> HTTPConnection:
    injected = kwargs.pop(_REQUEST_PARAMETER, None)
    if isinstance(injected, HTTPConnection):
        return injected
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise TypeError("require_scope found no request")  # the signature below always has one


def _with_request_parameter(endpoint: Callable[..., Any]) -> inspect.Signature:
    """The endpoint's signature, plus a ``Request`` parameter if it has none.

    Frameworks that inspect signatures (FastAPI) then pass the request to the wrapper,
    which removes it again before calling an endpoint that did not ask for it.
    """
    signature = inspect.signature(endpoint)
    with contextlib.suppress(NameError, TypeError):
        hints = get_type_hints(endpoint, include_extras=True)
        signature = signature.replace(
            parameters=[
                p.replace(annotation=hints.get(p.name, p.annotation))
                for p in signature.parameters.values()
            ],
            return_annotation=hints.get("return", signature.return_annotation),
        )
    takes_request = any(
        isinstance(p.annotation, type) and issubclass(p.annotation, HTTPConnection)
        for p in signature.parameters.values()
    )
    if takes_request or "request" in signature.parameters:
        return signature
    extra = inspect.Parameter(
        _REQUEST_PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=Request
    )
    parameters = list(signature.parameters.values())
    keyword_at = next(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
        len(parameters),
    )
    parameters.insert(keyword_at, extra)
    return signature.replace(parameters=parameters)


def require_scope(
    scopes: str | Sequence[str],
) -> Callable[[Callable[_P, Any]], Callable[_P, Awaitable[Any]]]:
    """Like Starlette's ``requires``, with RFC 6750 401 / 403 ``insufficient_scope`` replies.

    Works on any endpoint: one that takes no request gets it passed by signature.
    """
    needed = [scopes] if isinstance(scopes, str) else list(scopes)

    def decorator(endpoint: Callable[_P, Any]) -> Callable[_P, Awaitable[Any]]:
        @functools.wraps(endpoint)
        async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            request = _request_of(args, kwargs)
            if not request.user.is_authenticated:
                return _bearer_response(TokenInvalid("token_invalid", "no token"), _NO_CREDENTIALS)
            if any(s not in request.auth.scopes for s in needed):
                return _bearer_response(*_insufficient_scope(needed))
            if inspect.iscoroutinefunction(endpoint):
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        wrapper.__signature__ = _with_request_parameter(endpoint)  # type: ignore[attr-defined]
        return wrapper

    return decorator


def __getattr__(name: str) -> Any:
    if name == "KeyproofBearer":  # needs FastAPI, which a Starlette service may not have
        from keyproof._fastapi import KeyproofBearer

        return KeyproofBearer
    raise AttributeError(f"module 'keyproof.guard' has no attribute {name!r}")
