"""A resource server for the client tests: keyproof.guard with introspection on every token.

``uvicorn --factory resource_app:create_app``, configured by the environment:
``RS_ISSUER`` (the keyproof URL, also the token audience) and ``RS_CLIENT_SECRET``
(its introspection secret, client id ``rs``). Because every token is introspected, a
revoked token is refused at once with 401.

- ``GET /me``: the token's ``sub``, ``scope`` and ``jti``; ``POST /me`` also echoes
  the JSON body, so a resent request can be told apart from an empty one.
- ``/foreign/me``: the same behind a guard for another audience: always 401.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from keyproof.guard import KeyproofBackend, on_error, require_scope

CLIENT_ID = "rs"


@require_scope("profile:read")
async def me(request: Request) -> Response:
    claims = request.user.claims
    reply = {"sub": claims["sub"], "scope": claims["scope"], "jti": claims["jti"]}
    if request.method == "POST":
        reply["body"] = await request.json()
    return JSONResponse(reply)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def guarded(issuer: str, audience: str, secret: str) -> Starlette:
    backend = KeyproofBackend(
        issuer=issuer,
        audience=audience,
        jwks_url=f"{issuer}/.well-known/jwks.json",
        introspect_scopes={"profile:read"},
        introspection_url=f"{issuer}/v1/introspect",
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=secret,
    )
    return Starlette(
        routes=[Route("/me", me, methods=["GET", "POST"])],
        middleware=[Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)],
    )


def create_app() -> Starlette:
    issuer, secret = os.environ["RS_ISSUER"], os.environ["RS_CLIENT_SECRET"]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Mount("/foreign", app=guarded(issuer, "https://foreign.example", secret)),
            Mount("/", app=guarded(issuer, issuer, secret)),
        ]
    )
