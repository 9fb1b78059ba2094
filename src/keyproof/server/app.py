"""The HTTP API (specs/protocol.md §6): a thin adapter from JSON requests to the service."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyproof._httpio import (
    CompactJSONResponse,
    access_credentials,
    dpop_proof,
    error_response,
    is_form,
    json_response,
    read_form_or_json,
    read_json_object,
    string_field,
)
from keyproof._time import Clock
from keyproof.accounts import families
from keyproof.dpop import DPOP_ALGORITHMS
from keyproof.errors import (
    ClientAuthenticationFailed,
    DPoPProofInvalid,
    InsufficientScope,
    InvalidRequest,
    KeyproofError,
    MethodNotAllowed,
    NotFound,
    TokenInvalid,
    Unavailable,
    UnsupportedGrantType,
)
from keyproof.guard import www_authenticate
from keyproof.server._clientip import ClientIpResolver
from keyproof.server._cors import Cors
from keyproof.server._edge import EdgeMiddleware
from keyproof.server._metrics import ERROR_CODE_SCOPE_KEY, Metrics
from keyproof.server._openapi import load_openapi
from keyproof.server._signals import on_hangup
from keyproof.server._storewatch import WatchedStore
from keyproof.server._token_dpop import token_endpoint
from keyproof.server.components import Components, build_components
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores import open_store
from keyproof.stores.base import Store
from keyproof.tokens import JWKS_MAX_AGE

__all__ = [
    "BROWSER_ROUTES",
    "GRANT_TYPES",
    "ROUTES",
    "SIGNED_CHALLENGE_GRANT",
    "create_app",
    "create_app_from_environment",
]

SIGNED_CHALLENGE_GRANT: Final = "urn:keyproof:grant-type:signed-challenge"
"""The RFC 6749 §4.5 extension grant: a signed challenge (``message``, ``signature``)."""
GRANT_TYPES: Final = (SIGNED_CHALLENGE_GRANT, "refresh_token")

ROUTES: Final = (
    ("/v1/challenge", "challenge", "POST"),
    ("/v1/token", "token", "POST"),
    ("/v1/revoke", "revoke", "POST"),
    ("/v1/introspect", "introspect", "POST"),
    ("/v1/actions/verify", "verify_action", "POST"),
    ("/.well-known/jwks.json", "jwks", "GET"),
    ("/.well-known/oauth-authorization-server", "metadata", "GET"),
    ("/healthz", "healthz", "GET"),
    ("/readyz", "readyz", "GET"),
    ("/metrics", "metrics_text", "GET"),
    ("/openapi.json", "openapi", "GET"),
)
"""``(path, handler, method)`` of every endpoint."""
BROWSER_ROUTES: Final = frozenset(
    {
        "/v1/challenge",
        "/v1/token",
        "/v1/revoke",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    }
)
"""Paths a browser app may call from a ``cors_origins`` origin (specs/protocol.md §6.1)."""


class Endpoints:
    """Request handlers; their components are wired once, when the app starts."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.openapi_document = load_openapi()
        self.client_ip = ClientIpResolver(settings.trusted_proxies, settings.forwarded_header)
        self._components: Components | None = None

    def start(self, components: Components) -> None:
        self._components = components

    @property
    def components(self) -> Components:
        if self._components is None:  # a request before startup finished
            raise Unavailable("store_unavailable", "the server is starting")
        return self._components

    async def challenge(self, request: Request) -> Response:
        body = await read_json_object(request, self.settings.max_body_bytes)
        challenge = await self.components.service.challenge(
            account=_required(body, "account"),
            scope=string_field(body, "scope", required=False),
            audience=string_field(body, "audience", required=False),
            client_ip=self.client_ip(request.scope),
            origin=string_field(body, "origin", required=False),
            browser_origin=request.headers.get("origin"),
            dpop_jkt=string_field(body, "dpop_jkt", required=False),
        )
        return json_response(
            {
                "nonce": challenge.nonce,
                "message": challenge.message,
                "account": challenge.account,
                "scope": challenge.scope,
                "issued_at": challenge.issued_at,
                "expires_at": challenge.expires_at,
            },
            status=201,
            no_store=True,
        )

    async def token(self, request: Request) -> Response:
        """Both grants, as JSON or as an RFC 6749 form; a ``DPoP`` header binds the token."""
        body = await read_form_or_json(request, self.settings.max_body_bytes)
        grant = _grant_type(body, form=is_form(request))
        proof = dpop_proof(request)
        service = self.components.service
        client_ip = self.client_ip(request.scope)
        if grant == SIGNED_CHALLENGE_GRANT:
            token = await service.redeem(
                _required(body, "message"),
                _required(body, "signature"),
                client_ip=client_ip,
                dpop_proof=proof,
            )
        else:
            token = await service.refresh(
                _required(body, "refresh_token"),
                string_field(body, "scope", required=False),
                dpop_proof=proof,
                client_ip=client_ip,
            )
        reply: dict[str, Any] = {
            "access_token": token.token,
            "token_type": token.token_type,
            "expires_in": token.expires_in,
            "scope": token.scope,
        }
        if token.refresh_token is not None:
            reply["refresh_token"] = token.refresh_token
        response = json_response(reply, no_store=True)
        nonce = service.dpop_nonce()
        if nonce is not None:
            response.headers["DPoP-Nonce"] = nonce
        return response

    async def jwks(self, request: Request) -> Response:
        return CompactJSONResponse(
            self.components.keys.current().jwks(),
            headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"},
        )

    async def revoke(self, request: Request) -> Response:
        body = await read_form_or_json(request, self.settings.max_body_bytes)
        await self.components.revocation.revoke(_token_parameter(body))
        return json_response({}, no_store=True)

    async def introspect(self, request: Request) -> Response:
        clients = self.components.introspection_clients
        try:
            # Two sets of credentials name no one client: refused as none.
            presented = request.headers.getlist("authorization")
            clients.authenticate(presented[0] if len(presented) == 1 else None)
        except ClientAuthenticationFailed as exc:
            return _challenged(request, exc, 'Basic realm="keyproof introspection"')
        body = await read_form_or_json(request, self.settings.max_body_bytes)
        active = await self.components.revocation.introspect(_token_parameter(body))
        return json_response(active, no_store=True)

    async def verify_action(self, request: Request) -> Response:
        try:
            credentials = access_credentials(request)
        except InvalidRequest as exc:
            return _challenged(request, exc, 'Bearer error="invalid_request"')
        scheme = credentials.scheme if credentials else "Bearer"
        body = await read_json_object(request, self.settings.max_body_bytes)
        try:
            verified = await self.components.actions.verify(
                credentials, body, client_ip=self.client_ip(request.scope)
            )
        except (TokenInvalid, DPoPProofInvalid) as exc:
            challenge = www_authenticate(exc, {"error": exc.oauth_error}, scheme)
            return _challenged(request, exc, str(challenge), status=401)
        except InsufficientScope as exc:
            # Raised only once expect.scope was checked to be one plain scope-token.
            params = {"error": "insufficient_scope", "scope": body["expect"]["scope"]}
            return _challenged(request, exc, str(www_authenticate(exc, params, scheme)))
        return json_response(verified.to_json(), no_store=True)

    async def metadata(self, request: Request) -> Response:
        base = self.settings.issuer.rstrip("/")
        return CompactJSONResponse(
            {
                "issuer": self.settings.issuer,
                "token_endpoint": token_endpoint(self.settings.issuer),
                "challenge_endpoint": f"{base}/v1/challenge",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "revocation_endpoint": f"{base}/v1/revoke",
                "revocation_endpoint_auth_methods_supported": ["none"],
                "introspection_endpoint": f"{base}/v1/introspect",
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": sorted(self.settings.policy.scopes),
                "response_types_supported": [],
                "grant_types_supported": list(GRANT_TYPES),
                "token_endpoint_auth_methods_supported": ["none"],
                "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
                "account_types_supported": sorted(families()),
                "chains_supported": list(self.settings.chains),
            }
        )

    async def healthz(self, request: Request) -> Response:
        return CompactJSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the store answers and the key file reloads; else 503 + ``Retry-After``."""
        await self.components.store.ping()
        self.components.keys.current()  # picks up a rewritten key file, as a request would
        key_file = self.components.key_file
        if key_file is not None and key_file.reload_error is not None:
            raise Unavailable("keys_unavailable", "the signing-key file cannot be reloaded")
        return CompactJSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})

    async def openapi(self, request: Request) -> Response:
        return CompactJSONResponse(self.openapi_document)

    async def metrics_text(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _required(body: dict[str, Any], name: str) -> str:
    value = string_field(body, name)
    if value is None:  # unreachable: string_field raises for a required member
        raise InvalidRequest("missing_field", f"{name} is required")
    return value


def _grant_type(body: dict[str, Any], *, form: bool) -> str:
    """The request's grant; a JSON body without one is the signed-challenge grant.

    A form is an RFC 6749 token request, which always names its grant (§4.5, §6).
    """
    grant = string_field(body, "grant_type", required=form)
    if grant is None:
        return SIGNED_CHALLENGE_GRANT
    if grant not in GRANT_TYPES:
        raise UnsupportedGrantType("unsupported_grant_type", "grant_type is not supported")
    return grant


def _token_parameter(body: dict[str, Any]) -> str:
    """``token`` of an RFC 7009/7662 request; ``token_type_hint``, if sent, is a string."""
    string_field(body, "token_type_hint", required=False)
    return _required(body, "token")


def _challenged(
    request: Request, error: KeyproofError, challenge: str, status: int | None = None
) -> Response:
    """An authentication failure with the RFC 7235 challenge header."""
    request.scope[ERROR_CODE_SCOPE_KEY] = error.code
    response = error_response(error, status=status)
    response.headers["WWW-Authenticate"] = challenge
    return response


async def _keyproof_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, KeyproofError):
        raise exc
    request.scope[ERROR_CODE_SCOPE_KEY] = exc.code
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    error: KeyproofError = NotFound("not_found", "no such endpoint")
    allow = None
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        error = MethodNotAllowed("method_not_allowed", "method not allowed")
        allow = (exc.headers or {}).get("Allow")
    request.scope[ERROR_CODE_SCOPE_KEY] = error.code
    response = error_response(error)
    if allow is not None:  # RFC 9110 §15.5.6: a 405 names the methods that are allowed
        response.headers["Allow"] = allow
    return response


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    keys: KeySet | None = None,
    clock: Clock = time.time,
) -> Starlette:
    """Build the ASGI app. Store and keys are opened at startup unless given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = store or open_store(settings.store, clock=clock)
        watched = WatchedStore(opened, metrics)
        components = build_components(
            settings, store=watched, keys=keys, clock=clock, rpc_observer=metrics.observe_rpc
        )
        with contextlib.suppress(Unavailable):  # /readyz says so; first use retries
            await components.store.open()  # e.g. PostgreSQL's forward migrations
        endpoints.start(components)
        try:
            with on_hangup(components.audit.reopen), _metrics_listener(settings, metrics):
                yield
        finally:
            await components.wallets.aclose()
            components.audit.close()
            if store is None:
                await opened.close()

    metrics = Metrics(path for path, _, _ in ROUTES)
    endpoints = Endpoints(settings, metrics)
    cors = None
    if settings.cors_origins:
        browser = {path: method for path, _, method in ROUTES if path in BROWSER_ROUTES}
        cors = Cors(origins=frozenset(settings.cors_origins), routes=browser)
    edge = Middleware(
        EdgeMiddleware,
        metrics=metrics,
        client_ip=endpoints.client_ip,
        body_timeout=settings.body_timeout,
        cors=cors,
    )
    # With a metrics_port, /metrics is served there only.
    private = {"/metrics"} if settings.metrics_port else set()
    return Starlette(
        routes=[
            Route(path, getattr(endpoints, name), methods=[m])
            for path, name, m in ROUTES
            if path not in private
        ],
        lifespan=lifespan,
        middleware=[edge],
        exception_handlers={KeyproofError: _keyproof_error, HTTPException: _http_error},
    )


def _metrics_listener(
    settings: Settings, metrics: Metrics
) -> contextlib.AbstractContextManager[None]:
    if not settings.metrics_port:
        return contextlib.nullcontext()
    return metrics.listener(settings.metrics_host, settings.metrics_port)


def create_app_from_environment() -> Starlette:
    """App factory for uvicorn worker processes: settings from ``KEYPROOF_*``."""
    return create_app(Settings.load(env=os.environ))
