"""A resource server for the client tests: keyproof.guard with introspection on every token.

``uvicorn --factory resource_app:create_app``, configured by the environment:
``RS_ISSUER`` (the keyproof URL, also the token audience) and ``RS_CLIENT_SECRET``
(its introspection secret, client id ``rs``). Because every token is introspected, a
revoked token is refused at once with 401.

- ``GET /me``: the token's ``sub``, ``scope``, ``jti`` and how it was presented
  (``token_type``: ``DPoP`` when its proof was checked); ``POST /me`` also echoes the
  JSON body, so a resent request can be told apart from an empty one.
- ``/foreign/me``: the same behind a guard for another audience: always 401.
- ``/nonce/me``: the same behind a resource server that wants its own nonce in DPoP
  proofs (RFC 9449 §9), as some DPoP resource servers do (keyproof's guard does not).
"""

from __future__ import annotations

import os
import secrets

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from keyproof import jose
from keyproof.guard import KeyproofBackend, on_error, require_scope

CLIENT_ID = "rs"


@require_scope("profile:read")
async def me(request: Request) -> Response:
    claims, token_type = request.user.claims, request.user.token_type
    reply = {"sub": claims["sub"], "scope": claims["scope"], "jti": claims["jti"]}
    reply["token_type"] = token_type
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


class RequireNonce:
    """Answer ``401 use_dpop_nonce`` with ``DPoP-Nonce`` (RFC 9449 §9) to a request whose
    proof lacks this server's nonce; the guard behind checks the proof itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.nonce = secrets.token_urlsafe(16)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _nonce_in_proof(scope) != self.nonce:
            challenge = 'DPoP error="use_dpop_nonce", error_description="a nonce is required"'
            headers = {"WWW-Authenticate": challenge, "DPoP-Nonce": self.nonce}
            reply = JSONResponse({"error": "use_dpop_nonce"}, status_code=401, headers=headers)
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _nonce_in_proof(scope: Scope) -> object:
    try:
        jws = jose.parse_compact(Headers(scope=scope).get("dpop", ""), max_length=4096)
        return jws.claims().get("nonce")
    except jose.JoseError:
        return None


def create_app() -> Starlette:
    issuer, secret = os.environ["RS_ISSUER"], os.environ["RS_CLIENT_SECRET"]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Mount("/foreign", app=guarded(issuer, "https://foreign.example", secret)),
            Mount("/nonce", app=RequireNonce(guarded(issuer, issuer, secret))),
            Mount("/", app=guarded(issuer, issuer, secret)),
        ]
    )
