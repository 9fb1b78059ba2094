"""A resource server guarded by ``keyproof.guard``, for clients that call it over HTTP.

``python tests/resource_server.py --issuer URL --port N [--cors-origin ORIGIN]`` serves:

- ``GET /profile`` (``profile:read``): who called, with which token type and token;
- ``GET /escrow`` (``escrow:release``): the same, each token also introspected at the
  issuer (client id ``resource-server``, secret from ``RESOURCE_CLIENT_SECRET``), so a
  revoked token or session is refused at once;
- ``GET /nonce/profile``: ``/profile`` that also asks for a server nonce (RFC 9449 §9),
  which the guard itself never does;
- ``GET /healthz``.

No leeway on ``exp``: a token is refused the second it expires.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyproof.guard import KeyproofBackend, on_error, require_scope

INTROSPECTION_CLIENT = "resource-server"
SERVER_NONCE = secrets.token_urlsafe(16)


def caller(request: Request) -> dict[str, Any]:
    claims = request.user.claims
    return {
        "sub": request.user.sub,
        "token_type": request.user.token_type,
        "jti": claims["jti"],
        "exp": claims["exp"],
        "jkt": claims.get("cnf", {}).get("jkt"),
    }


@require_scope("profile:read")
async def profile(request: Request) -> JSONResponse:
    return JSONResponse(caller(request))


@require_scope("escrow:release")
async def escrow(request: Request) -> JSONResponse:
    return JSONResponse(caller(request))


@require_scope("profile:read")
async def profile_with_nonce(request: Request) -> JSONResponse:
    """The guard checked the proof; its ``nonce`` claim must be this server's."""
    payload = request.headers["dpop"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if claims.get("nonce") != SERVER_NONCE:
        challenge = 'DPoP error="use_dpop_nonce", error_description="use the server nonce"'
        headers = {"WWW-Authenticate": challenge, "DPoP-Nonce": SERVER_NONCE}
        return JSONResponse({"error": "use_dpop_nonce"}, status_code=401, headers=headers)
    return JSONResponse(caller(request))


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(issuer: str, cors_origins: list[str]) -> Starlette:
    backend = KeyproofBackend(
        issuer=issuer,
        audience=issuer,
        jwks_url=f"{issuer}/.well-known/jwks.json",
        leeway=0,
        introspect_scopes={"escrow:release"},
        introspection_url=f"{issuer}/v1/introspect",
        introspection_client_id=INTROSPECTION_CLIENT,
        introspection_client_secret=os.environ["RESOURCE_CLIENT_SECRET"],
    )
    cors = Middleware(
        CORSMiddleware,
        allow_origins=cors_origins,
        allow_methods=["GET"],
        allow_headers=["Authorization", "DPoP"],
        expose_headers=["WWW-Authenticate", "DPoP-Nonce"],
    )
    auth = Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)
    routes = [
        Route("/profile", profile),
        Route("/escrow", escrow),
        Route("/nonce/profile", profile_with_nonce),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes, middleware=[cors, auth])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cors-origin", action="append", default=[])
    args = parser.parse_args()
    app = create_app(args.issuer, args.cors_origin)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
