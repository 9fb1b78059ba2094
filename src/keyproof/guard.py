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

Only the ``Authorization`` header is read; a token in the query string is refused. A
token bound to a DPoP key (``cnf.jkt``, RFC 9449) is accepted only as ``Authorization:
DPoP <token>`` with a ``DPoP`` proof of that key for this request (method, URL, a hash of
the token, a ``jti`` used once in ``dpop_replay_store``: replicas should share one);
``public_url`` names the URL clients sign when a proxy sits in front. A token without
``cnf`` is accepted only with the ``Bearer`` scheme. Refusals of a ``DPoP`` request use
the ``DPoP`` challenge (RFC 9449 §7.1).

Keys come only from ``jwks_url``: fetched once, cached for ``max_age``,
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
from typing import TYPE_CHECKING, Any, Final, ParamSpec, get_type_hints

import httpx
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from keyproof._httpio import access_credentials, dpop_proof, error_response, read_json_object
from keyproof._time import Clock
from keyproof.dpop import DPOP_ALGORITHMS, ProofReplayCache, check_sender
from keyproof.errors import (
    ConfigurationError,
    DPoPProofInvalid,
    InsufficientScope,
    InvalidRequest,
    KeyproofError,
    TokenInvalid,
    Unavailable,
)
from keyproof.jwks import JWKSCache, check_url, parse_jwks
from keyproof.stores.base import Store
from keyproof.stores.memory import MemoryStore
from keyproof.tokens import (
    DEFAULT_LEEWAY,
    MAX_VERIFY_LEEWAY,
    confirmation_jkt,
    parse_token,
    verify_parsed,
)

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
_DPOP_ALGS: Final = " ".join(DPOP_ALGORITHMS)
_P = ParamSpec("_P")


class BearerError(AuthenticationError):
    """A request refused by the guard; :func:`on_error` renders it per RFC 6750 §3
    (RFC 9449 §7.1 when the request used the ``DPoP`` scheme)."""

    def __init__(self, error: KeyproofError, scheme: str = "Bearer") -> None:
        super().__init__(error.description)
        self.error = error
        self.scheme = scheme


class KeyproofUser(BaseUser):
    """The authenticated token holder: ``sub`` is the account id, ``claims`` everything.

    ``token_type`` is ``DPoP`` for a sender-constrained token whose proof was checked,
    else ``Bearer``.
    """

    def __init__(self, claims: Mapping[str, Any], token_type: str = "Bearer") -> None:  # noqa: S107
        self.claims = dict(claims)
        self.sub: str = self.claims["sub"]
        self.token_type = token_type

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
        dpop_replay_store: Store | None = None,
        public_url: str | None = None,
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
        # Several replicas of one resource server must share one store (e.g. Redis), or
        # a proof replayed at another replica would not be recognized.
        self._replay = ProofReplayCache(dpop_replay_store or MemoryStore(clock=clock))
        if public_url is not None:
            check_url(public_url, "public_url")
        self._public_url = public_url.rstrip("/") if public_url else None
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
        """Credentials for a valid token, ``None`` without one, else raise :class:`BearerError`."""
        user = await self.user_of(conn)
        if user is None:
            return None
        return AuthCredentials(user.scopes), user

    async def user_of(self, conn: HTTPConnection) -> KeyproofUser | None:
        """The holder of the request's valid token, ``None`` without one, else raise
        :class:`BearerError`.

        A ``Bearer`` token must carry no ``cnf``; a ``DPoP`` one must come with a proof of
        its ``cnf.jkt`` for this request (RFC 9449 §7.1), each proof accepted once.
        """
        try:
            credentials = access_credentials(conn)
        except InvalidRequest as exc:
            raise BearerError(exc) from None
        if credentials is None:
            return None
        scheme = credentials.scheme
        try:
            claims = await self._verified(credentials.token)
            proof = dpop_proof(conn)
            # An unbound bearer token needs no proof: skip building the request URL.
            if scheme != "Bearer" or confirmation_jkt(claims) is not None:
                await check_sender(
                    claims,
                    scheme=scheme,
                    token=credentials.token,
                    proof=proof,
                    method=conn.scope.get("method", "GET"),
                    url=self._request_url(conn),
                    now=int(self._clock()),
                    replay=self._replay,
                )
        except TokenInvalid as exc:
            logger.debug("token refused: %s (%s)", exc.code, exc.description)
            raise BearerError(_public(exc), scheme) from None
        except (DPoPProofInvalid, InvalidRequest, Unavailable) as exc:
            raise BearerError(exc, scheme) from None
        return KeyproofUser(claims, scheme)

    def _request_url(self, conn: HTTPConnection) -> str:
        """The URL a proof's ``htu`` must name: ``public_url`` + path behind a proxy.

        The path is the one the client sent, percent-encoding and all (ASGI
        ``raw_path``): Starlette's ``url`` decodes it, which no client's ``htu`` does.
        """
        path = conn.url.path
        raw = conn.scope.get("raw_path")
        if isinstance(raw, bytes) and urllib.parse.unquote(raw.decode("latin-1")) == path:
            path = raw.decode("latin-1")
        if self._public_url is None:
            return str(conn.url.replace(path=path))
        return self._public_url + path

    async def verify(self, token: str) -> dict[str, Any]:
        """Verify a bearer ``token`` against the issuer's keys (and introspection if set).

        A DPoP-bound token is refused here: its proof belongs to a request, so it is
        checked by :meth:`authenticate` / :meth:`user_of`.
        """
        claims = await self._verified(token)
        if confirmation_jkt(claims) is not None:
            raise TokenInvalid("token_invalid", "a DPoP-bound token needs its proof")
        return claims

    async def _verified(self, token: str) -> dict[str, Any]:
        jws = parse_token(token)
        kid = jws.header.get("kid")  # only to pick a cached key; verification checks all
        kid = kid if isinstance(kid, str) else None
        keys = self.jwks.fresh(kid)
        if keys is None:
            keys = await self.jwks.keys(kid)
        claims = verify_parsed(
            jws,
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


# -- responses -------------------------------------------------------------------------


def www_authenticate(
    error: KeyproofError, params: Mapping[str, str] | None = None, scheme: str = "Bearer"
) -> str | None:
    """The RFC 6750 §3 challenge for a refusal (``None`` for a 503, which carries none).

    ``params`` default to the error's ``error`` and ``error_description``; values lose
    characters a quoted-string cannot carry. With ``scheme="DPoP"`` the challenge is RFC
    9449 §7.1's, naming the proof algorithms accepted.
    """
    if isinstance(error, Unavailable):
        return None
    if params is None:
        params = {"error": error.oauth_error, "error_description": error.description}
        if isinstance(error, InvalidRequest):
            params = {"error": "invalid_request"}
    if scheme == "DPoP" or isinstance(error, DPoPProofInvalid):
        scheme, params = "DPoP", {**params, "algs": _DPOP_ALGS}
    quoted = ", ".join(f'{k}="{UNSAFE_IN_QUOTES.sub("", v)}"' for k, v in params.items())
    return f"{scheme} {quoted}" if quoted else scheme


def _refusal_status(error: KeyproofError) -> int:
    """A resource server answers a bad DPoP proof ``401`` (RFC 9449 §7.1)."""
    return 401 if isinstance(error, DPoPProofInvalid) else error.status


def _bearer_response(
    error: KeyproofError, params: Mapping[str, str] | None = None, scheme: str = "Bearer"
) -> Response:
    response = error_response(error, status=_refusal_status(error))
    challenge = www_authenticate(error, params, scheme)
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``AuthenticationMiddleware(on_error=...)``: RFC 6750 / RFC 9449 error responses."""
    if isinstance(exc, BearerError):
        return _bearer_response(exc.error, scheme=exc.scheme)
    return _bearer_response(TokenInvalid("token_invalid", "invalid token"))


_NO_CREDENTIALS_CHALLENGE: Final = f'Bearer, DPoP algs="{_DPOP_ALGS}"'
"""RFC 6750 §3.1 / RFC 9449 §7.1: no error code when the request carried no credentials,
and both schemes offered."""


def _no_credentials_response() -> Response:
    response = error_response(TokenInvalid("token_invalid", "no token"))
    response.headers["WWW-Authenticate"] = _NO_CREDENTIALS_CHALLENGE
    return response


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
                return _no_credentials_response()
            if any(s not in request.auth.scopes for s in needed):
                scheme = getattr(request.user, "token_type", "Bearer")
                return _bearer_response(*_insufficient_scope(needed), scheme=scheme)
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
