"""A small escrow service that accepts keyproof tokens and signed release actions.

Run a keyproof server whose audiences include this service and which lists this
service in ``introspection_clients`` (id -> SHA-256 hex of the secret), then::

    ESCROW_INTROSPECTION_CLIENT_SECRET=... python examples/escrow.py \
        --keyproof http://127.0.0.1:8000 --port 8100 --introspection-client-id escrow-rs

``GET /escrows/{id}`` needs a token with ``escrow:read``. ``POST /escrows/{id}/release``
needs ``escrow:release`` *and* a body ``{"action": {...}, "signature": "..."}``: an
action of type ``escrow.release`` for that escrow, signed by the token's holder
(EIP-712 for Ethereum wallets), used once. Only the escrow's depositor may release it.
Tokens carrying ``escrow:release`` are checked at keyproof's introspection endpoint on
every request, so a revoked token stops working at once rather than at its ``exp``.
The escrows live in memory: demo ones, or those of ``--escrows FILE`` (a JSON list of
``{id, amount, currency, depositor, beneficiary}`` with canonical account ids).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyproof.actions import ActionVerifier
from keyproof.errors import KeyproofError, NotFound
from keyproof.guard import (
    KeyproofBackend,
    error_response,
    on_error,
    read_json_object,
    require_scope,
)
from keyproof.stores import open_store

SERVICE = "Acme Escrow"
MAX_BODY_BYTES = 16 * 1024
SECRET_ENV = "ESCROW_INTROSPECTION_CLIENT_SECRET"  # noqa: S105 - a variable name
ESCROW_MEMBERS = ("id", "amount", "currency", "depositor", "beneficiary")


@dataclass
class Escrow:
    """Funds ``depositor`` placed for ``beneficiary``; only the depositor releases them."""

    id: str
    amount: str
    currency: str
    depositor: str
    beneficiary: str
    status: str = "funded"

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "amount": self.amount,
            "currency": self.currency,
            "depositor": self.depositor,
            "beneficiary": self.beneficiary,
            "status": self.status,
        }


def demo_escrows() -> dict[str, Escrow]:
    depositor = "eip155:1:0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
    return {
        "escrow-1": Escrow(
            "escrow-1",
            "100",
            "USDC",
            depositor,
            "eip155:1:0x000000000000000000000000000000000000dEaD",
        ),
        "escrow-2": Escrow(
            "escrow-2",
            "2.5",
            "ETH",
            depositor,
            "eip155:1:0x000000000000000000000000000000000000bEEF",
        ),
    }


def load_escrows(path: Path) -> dict[str, Escrow]:
    """Escrows from a JSON list of objects with exactly :data:`ESCROW_MEMBERS`."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of escrows")
    escrows: dict[str, Escrow] = {}
    for entry in entries:
        if not isinstance(entry, dict) or sorted(entry) != sorted(ESCROW_MEMBERS):
            raise ValueError(f"{path}: each escrow has exactly {', '.join(ESCROW_MEMBERS)}")
        if not all(isinstance(entry[name], str) for name in ESCROW_MEMBERS):
            raise ValueError(f"{path}: escrow members are strings")
        escrows[entry["id"]] = Escrow(**entry)
    return escrows


def forbidden(reason: str, description: str) -> Response:
    return JSONResponse(
        {"error": "forbidden", "reason": reason, "error_description": description}, 403
    )


def create_escrow_app(
    *,
    keyproof_url: str,
    audience: str,
    introspection_client: tuple[str, str],
    escrows: dict[str, Escrow] | None = None,
    store_url: str = "memory://",
    issuer: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The escrow service: keyproof guard for tokens, ``ActionVerifier`` for releases.

    ``introspection_client`` is the (id, secret) this service authenticates with at
    keyproof's introspection endpoint, asked for every token carrying ``escrow:release``.
    """
    base = keyproof_url.rstrip("/")
    client_id, client_secret = introspection_client
    backend = KeyproofBackend(
        issuer=issuer or keyproof_url,
        audience=audience,
        jwks_url=f"{base}/.well-known/jwks.json",
        clock=clock,
        introspect_scopes={"escrow:release"},
        introspection_url=f"{base}/v1/introspect",
        introspection_client_id=client_id,
        introspection_client_secret=client_secret,
    )
    store = open_store(store_url)
    verifier = ActionVerifier(store, service=SERVICE, clock=clock)
    escrows = demo_escrows() if escrows is None else escrows

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
        # The verifier below also requires signer == token sub, so the signer is the
        # depositor too. Checking first refuses strangers before any action id is used.
        if request.user.sub != escrow.depositor:
            return forbidden("not_depositor", "only the depositor may release this escrow")
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
    parser.add_argument("--escrows", type=Path, help="JSON list of escrows (default: demo)")
    parser.add_argument(
        "--introspection-client-id",
        default=os.environ.get("ESCROW_INTROSPECTION_CLIENT_ID"),
        help="client id at keyproof's introspection endpoint (or $ESCROW_INTROSPECTION_CLIENT_ID)",
    )
    args: Any = parser.parse_args(argv)
    # The secret comes from the environment only: command lines are visible to every user.
    secret = os.environ.get(SECRET_ENV)
    if not args.introspection_client_id or not secret:
        parser.error(f"set --introspection-client-id and ${SECRET_ENV}")
    import uvicorn

    audience = args.audience or f"http://127.0.0.1:{args.port}"
    app = create_escrow_app(
        keyproof_url=args.keyproof,
        audience=audience,
        introspection_client=(args.introspection_client_id, secret),
        escrows=load_escrows(args.escrows) if args.escrows else None,
        store_url=args.store,
    )
    print(f"escrow service {audience}, tokens from {args.keyproof}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
