"""The HTTP API (DESIGN §5): a thin adapter from JSON requests to ``Service``."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyproof.accounts import families
from keyproof.action_requests import verify_action_request
from keyproof.clientip import ClientIpResolver
from keyproof.config import Settings
from keyproof.errors import (
    ClientAuthenticationFailed,
    InsufficientScope,
    InvalidRequest,
    KeyproofError,
    MethodNotAllowed,
    NotFound,
    TokenInvalid,
    Unavailable,
)
from keyproof.httpio import (
    error_response,
    json_response,
    read_form_or_json,
    read_json_object,
    string_field,
)
from keyproof.keys import JWKS_MAX_AGE, KEY_FILE_NAME, KeyFile, KeySet
from keyproof.logs import RequestIdMiddleware
from keyproof.metrics import ERROR_CODE_SCOPE_KEY, Metrics, MetricsMiddleware
from keyproof.revocation import Revocation, authenticate_client
from keyproof.service import Service
from keyproof.stores import open_store
from keyproof.stores.base import Store

__all__ = ["create_app", "create_app_from_environment"]


class Endpoints:
    """Request handlers bound to one service instance."""

    def __init__(self, settings: Settings, service: Callable[[], Service]) -> None:
        self.settings = settings
        self._service = service
        self.client_ip = ClientIpResolver(settings.trusted_proxies, settings.forwarded_header)
        self.metrics: Metrics | None = None
        self.key_file: KeyFile | None = None

    async def challenge(self, request: Request) -> Response:
        body = await read_json_object(request, self.settings.max_body_bytes)
        challenge = await self._service().challenge(
            account=_required(body, "account"),
            scope=string_field(body, "scope", required=False),
            audience=string_field(body, "audience", required=False),
            client_ip=self.client_ip(request.scope),
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
        body = await read_json_object(request, self.settings.max_body_bytes)
        token = await self._service().redeem(
            _required(body, "message"),
            _required(body, "signature"),
            client_ip=self.client_ip(request.scope),
        )
        return json_response(
            {
                "access_token": token.token,
                "token_type": "Bearer",
                "expires_in": token.expires_in,
                "scope": token.scope,
            },
            no_store=True,
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(
            self._service().keys.jwks(),
            headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"},
        )

    def _revocation(self) -> Revocation:
        service = self._service()
        return Revocation(self.settings, service.store, service.keys, service.clock)

    async def revoke(self, request: Request) -> Response:
        body = await read_form_or_json(request, self.settings.max_body_bytes)
        await self._revocation().revoke(_required(body, "token"))
        return json_response({}, no_store=True)

    async def introspect(self, request: Request) -> Response:
        try:
            authenticate_client(self.settings, request.headers.get("authorization"))
        except ClientAuthenticationFailed as exc:
            return _challenged(request, exc, 'Basic realm="keyproof introspection"')
        body = await read_form_or_json(request, self.settings.max_body_bytes)
        return json_response(
            await self._revocation().introspect(_required(body, "token")), no_store=True
        )

    async def verify_action(self, request: Request) -> Response:
        body = await read_json_object(request, self.settings.max_body_bytes)
        try:
            verified = await verify_action_request(
                self._service(),
                request.headers.get("authorization"),
                body,
                client_ip=self.client_ip(request.scope),
            )
        except TokenInvalid as exc:
            return _challenged(request, exc, 'Bearer error="invalid_token"')
        except InsufficientScope as exc:
            # Raised only once expect.scope was checked to be one plain scope-token.
            needed = body["expect"]["scope"]
            return _challenged(request, exc, f'Bearer error="insufficient_scope", scope="{needed}"')
        return json_response(verified.to_json(), no_store=True)

    async def metadata(self, request: Request) -> Response:
        base = self.settings.issuer.rstrip("/")
        return JSONResponse(
            {
                "issuer": self.settings.issuer,
                "token_endpoint": f"{base}/v1/token",
                "challenge_endpoint": f"{base}/v1/challenge",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "revocation_endpoint": f"{base}/v1/revoke",
                "revocation_endpoint_auth_methods_supported": ["none"],
                "introspection_endpoint": f"{base}/v1/introspect",
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": sorted(self.settings.policy.scopes),
                "response_types_supported": [],
                "grant_types_supported": ["urn:keyproof:grant-type:signed-challenge"],
                "token_endpoint_auth_methods_supported": ["none"],
                "account_types_supported": sorted(families()),
                "chains_supported": list(self.settings.chains),
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the store answers and the key file reloads; else 503 + ``Retry-After``."""
        await self._service().store.ping()
        if self.key_file is not None and self.key_file.reload_error is not None:
            raise Unavailable("keys_unavailable", "the signing-key file cannot be reloaded")
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})

    async def metrics_text(self, request: Request) -> Response:
        if self.metrics is None:
            raise NotFound("not_found", "no such endpoint")
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _required(body: dict[str, Any], name: str) -> str:
    value = string_field(body, name)
    if value is None:  # unreachable: string_field raises for a required member
        raise InvalidRequest("missing_field", f"{name} is required")
    return value


def _challenged(request: Request, error: KeyproofError, www_authenticate: str) -> Response:
    """An authentication failure with the RFC 7235 challenge header."""
    request.scope[ERROR_CODE_SCOPE_KEY] = error.code
    response = error_response(error)
    response.headers["WWW-Authenticate"] = www_authenticate
    return response


async def _keyproof_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, KeyproofError):
        raise exc
    request.scope[ERROR_CODE_SCOPE_KEY] = exc.code
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    error: KeyproofError = NotFound("not_found", "no such endpoint")
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        error = MethodNotAllowed("method_not_allowed", "method not allowed")
    request.scope[ERROR_CODE_SCOPE_KEY] = error.code
    return error_response(error)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    keys: KeySet | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the ASGI app. Store and keys are opened at startup unless given."""
    state: dict[str, Service] = {}
    reloading: dict[str, KeyFile] = {}

    def current_service() -> Service:
        service = state["service"]
        if "file" in reloading:
            # `keyproof keys rotate/retire` rewrite the file; pick it up without a restart.
            service.keys = reloading["file"].current()
        return service

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = store or open_store(settings.store)
        if keys is None:
            reloading["file"] = endpoints.key_file = KeyFile(
                settings.data_dir / KEY_FILE_NAME, clock
            )
        key_set = keys or reloading["file"].current()
        state["service"] = Service(settings, opened, key_set, clock)
        try:
            yield
        finally:
            state["service"].audit.close()
            if store is None:
                await opened.close()

    endpoints = Endpoints(settings, current_service)
    routes = [
        Route("/v1/challenge", endpoints.challenge, methods=["POST"]),
        Route("/v1/token", endpoints.token, methods=["POST"]),
        Route("/v1/revoke", endpoints.revoke, methods=["POST"]),
        Route("/v1/introspect", endpoints.introspect, methods=["POST"]),
        Route("/v1/actions/verify", endpoints.verify_action, methods=["POST"]),
        Route("/.well-known/jwks.json", endpoints.jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", endpoints.metadata, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics_text, methods=["GET"]),
    ]
    endpoints.metrics = Metrics(route.path for route in routes)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                RequestIdMiddleware,
                paths=endpoints.metrics.endpoints,
                client_ip=endpoints.client_ip,
            ),
            Middleware(MetricsMiddleware, metrics=endpoints.metrics),
        ],
        exception_handlers={KeyproofError: _keyproof_error, HTTPException: _http_error},
    )


def create_app_from_environment() -> Starlette:
    """App factory for uvicorn worker processes: settings from ``KEYPROOF_*``."""
    return create_app(Settings.load(env=os.environ))
