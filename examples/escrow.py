"""A small escrow service that accepts keyproof tokens and signed release actions.

Run a keyproof server whose audiences include this service, then::

    python examples/escrow.py --keyproof http://127.0.0.1:8000 --port 8100

``GET /escrows/{id}`` needs a token with ``escrow:read``. ``POST /escrows/{id}/release``
needs ``escrow:release`` *and* a body ``{"action": {...}, "signature": "..."}``: an
action of type ``escrow.release`` for that escrow, signed by the token's holder
(EIP-712 for Ethereum wallets), used once. The escrows live in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyproof.actions import ActionVerifier
from keyproof.errors import KeyproofError, NotFound
from keyproof.guard import KeyproofBackend, on_error, require_scope
from keyproof.httpio import error_response, read_json_object
from keyproof.stores import open_store

SERVICE = "Acme Escrow"
MAX_BODY_BYTES = 16 * 1024


@dataclass
class Escrow:
    id: str
    amount: str
    currency: str
    beneficiary: str
    status: str = "funded"

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "amount": self.amount,
            "currency": self.currency,
            "beneficiary": self.beneficiary,
            "status": self.status,
        }


def demo_escrows() -> dict[str, Escrow]:
    return {
        "escrow-1": Escrow(
            "escrow-1", "100", "USDC", "eip155:1:0x000000000000000000000000000000000000dEaD"
        ),
        "escrow-2": Escrow(
            "escrow-2", "2.5", "ETH", "eip155:1:0x000000000000000000000000000000000000bEEF"
        ),
    }


def create_escrow_app(
    *,
    keyproof_url: str,
    audience: str,
    store_url: str = "memory://",
    issuer: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The escrow service: keyproof guard for tokens, ``ActionVerifier`` for releases."""
    base = keyproof_url.rstrip("/")
    backend = KeyproofBackend(
        issuer=issuer or keyproof_url,
        audience=audience,
        jwks_url=f"{base}/.well-known/jwks.json",
        clock=clock,
    )
    store = open_store(store_url)
    verifier = ActionVerifier(store, service=SERVICE, clock=clock)
    escrows = demo_escrows()

    def escrow_of(request: Request) -> Escrow:
        escrow = escrows.get(request.path_params["escrow_id"])
        if escrow is None:
            raise NotFound("not_found", "no such escrow")
        return escrow

    @require_scope("escrow:read")
    async def read(request: Request) -> Response:
        return JSONResponse(escrow_of(request).to_json())

    @require_scope("escrow:release")
    async def release(request: Request) -> Response:
        escrow = escrow_of(request)
        body = await read_json_object(request, MAX_BODY_BYTES)
        verified = await verifier.verify(
            body.get("action"),
            body.get("signature"),
            claims=request.user.claims,
            action_type="escrow.release",
            object_id=escrow.id,
        )
        action = verified.action
        # The holder approved a release of this amount: it must be what the escrow holds.
        if action.currency != escrow.currency or Decimal(action.amount or "0") != Decimal(
            escrow.amount
        ):
            return JSONResponse({"error": "conflict", "reason": "amount_mismatch"}, 409)
        if escrow.status != "funded":
            return JSONResponse({"error": "conflict", "reason": "not_funded"}, 409)
        escrow.status = "released"
        return JSONResponse({**escrow.to_json(), "released_by": verified.signer})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def keyproof_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, KeyproofError):
            raise exc
        return error_response(exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await backend.aclose()
            await store.close()

    return Starlette(
        routes=[
            Route("/escrows/{escrow_id}", read, methods=["GET"]),
            Route("/escrows/{escrow_id}/release", release, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error)],
        exception_handlers={KeyproofError: keyproof_error},
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keyproof", required=True, help="keyproof base URL (the issuer)")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--audience", help="this service's URL (default http://127.0.0.1:PORT)")
    parser.add_argument("--store", default="memory://", help="store for used action ids")
    args: Any = parser.parse_args(argv)
    import uvicorn

    audience = args.audience or f"http://127.0.0.1:{args.port}"
    app = create_escrow_app(keyproof_url=args.keyproof, audience=audience, store_url=args.store)
    print(f"escrow service {audience}, tokens from {args.keyproof}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
