"""The HTTP API (DESIGN §5): a thin adapter from JSON requests to ``Service``."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyproof.accounts import families
from keyproof.config import Settings
from keyproof.errors import InvalidRequest, KeyproofError, MethodNotAllowed, NotFound
from keyproof.httpio import error_response, json_response, read_json_object, string_field
from keyproof.keys import KEY_FILE_NAME, KeySet
from keyproof.service import Service
from keyproof.stores import open_store
from keyproof.stores.base import Store

__all__ = ["create_app", "create_app_from_environment"]


class Endpoints:
    """Request handlers bound to one service instance."""

    def __init__(self, settings: Settings, service: Callable[[], Service]) -> None:
        self.settings = settings
        self._service = service

    async def challenge(self, request: Request) -> Response:
        body = await read_json_object(request, self.settings.max_body_bytes)
        challenge = await self._service().challenge(
            account=_required(body, "account"),
            scope=string_field(body, "scope", required=False),
            audience=string_field(body, "audience", required=False),
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
            _required(body, "message"), _required(body, "signature")
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
            self._service().keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def metadata(self, request: Request) -> Response:
        base = self.settings.issuer.rstrip("/")
        return JSONResponse(
            {
                "issuer": self.settings.issuer,
                "token_endpoint": f"{base}/v1/token",
                "challenge_endpoint": f"{base}/v1/challenge",
                "jwks_uri": f"{base}/.well-known/jwks.json",
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


def _required(body: dict[str, Any], name: str) -> str:
    value = string_field(body, name)
    if value is None:  # unreachable: string_field raises for a required member
        raise InvalidRequest("missing_field", f"{name} is required")
    return value


async def _keyproof_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, KeyproofError):
        raise exc
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return error_response(MethodNotAllowed("method_not_allowed", "method not allowed"))
    return error_response(NotFound("not_found", "no such endpoint"))


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    keys: KeySet | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the ASGI app. Store and keys are opened at startup unless given."""
    state: dict[str, Service] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = store or open_store(settings.store)
        key_set = keys or KeySet.load_or_create(settings.data_dir / KEY_FILE_NAME, clock)
        state["service"] = Service(settings, opened, key_set, clock)
        try:
            yield
        finally:
            if store is None:
                await opened.close()

    endpoints = Endpoints(settings, lambda: state["service"])
    routes = [
        Route("/v1/challenge", endpoints.challenge, methods=["POST"]),
        Route("/v1/token", endpoints.token, methods=["POST"]),
        Route("/.well-known/jwks.json", endpoints.jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", endpoints.metadata, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={KeyproofError: _keyproof_error, HTTPException: _http_error},
    )


def create_app_from_environment() -> Starlette:
    """App factory for uvicorn worker processes: settings from ``KEYPROOF_*``."""
    return create_app(Settings.load(env=os.environ))
