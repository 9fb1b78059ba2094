"""The ASGI apps the HTTP cases load, besides keyproof itself (run with uvicorn).

- ``echo``: bare Starlette, the framework's own rate: ``POST /echo`` answers the body.
- ``guarded``: ``GET /profile`` behind ``keyproof.guard`` (JWKS from the issuer).
- ``pyjwt_guarded``: the same route behind a minimal PyJWT backend, the key given.

The resource apps read ``KEYPROOF_BENCH_ISSUER`` (issuer and audience) and
``KEYPROOF_BENCH_KEY`` (the issuer's Ed25519 public key, base64url) at import.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jwt
from jwt.algorithms import OKPAlgorithm
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
    requires,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from keyproof.crypto.encoding import decode_base64url, encode_base64url
from keyproof.guard import KeyproofBackend, on_error, require_scope

ISSUER = os.environ.get("KEYPROOF_BENCH_ISSUER", "https://issuer.example")
AUDIENCE = ISSUER
SCOPE = "profile:read"

with contextlib.suppress(ValueError):  # PyJWT knows RFC 9864's name once registered
    jwt.register_algorithm("Ed25519", OKPAlgorithm())


class JwtBackend(AuthenticationBackend):
    """What a user would write with PyJWT: Bearer header, decode, required claims, scopes."""

    def __init__(self, public_key: bytes, issuer: str = ISSUER) -> None:
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": encode_base64url(public_key)}
        self.key = OKPAlgorithm.from_jwk(jwk)
        self.issuer = issuer

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=["Ed25519"],
                audience=self.issuer,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("invalid token") from exc
        return AuthCredentials(str(claims.get("scope", "")).split()), SimpleUser(claims["sub"])


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def echo_body(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


echo = Starlette(routes=[Route("/healthz", healthz), Route("/echo", echo_body, methods=["POST"])])


def _profile(request: Request) -> Response:
    return JSONResponse({"sub": request.user.identity, "scopes": list(request.auth.scopes)})


def _guarded() -> Starlette:
    backend = KeyproofBackend(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{ISSUER}/.well-known/jwks.json"
    )

    @require_scope(SCOPE)
    async def profile(request: Request) -> Response:
        return _profile(request)

    middleware = [Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)]
    return Starlette(
        routes=[Route("/healthz", healthz), Route("/profile", profile)], middleware=middleware
    )


def _pyjwt_guarded() -> Starlette:
    key = decode_base64url(
        os.environ.get("KEYPROOF_BENCH_KEY", encode_base64url(bytes(32))), length=32
    )

    @requires(SCOPE)
    async def profile(request: Request) -> Response:
        return _profile(request)

    def refused(conn: HTTPConnection, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=401)

    backend = JwtBackend(key)
    middleware = [Middleware(AuthenticationMiddleware, backend=backend, on_error=refused)]
    return Starlette(
        routes=[Route("/healthz", healthz), Route("/profile", profile)], middleware=middleware
    )


def __getattr__(name: str) -> Any:
    # Built on first use: each worker process builds only the app it serves.
    builders = {"guarded": _guarded, "pyjwt_guarded": _pyjwt_guarded}
    if name in builders:
        app = builders[name]()
        globals()[name] = app
        return app
    raise AttributeError(name)
