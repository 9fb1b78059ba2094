"""A running issuer (in process, frozen clock) and a client that signs in with DPoP.

The issuer is a real keyproof app on a memory store reached through
``httpx.ASGITransport``; wallets and DPoP keys are real signing keys.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet, SigningKey
from keyproof.server.policy import Policy
from keyproof.stores.base import Store
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import DPoPKey, EthWallet

ISSUER = "http://127.0.0.1:8000"
TOKEN_URL = f"{ISSUER}/v1/token"
CLIENT_ID = "escrow-rs"
CLIENT_SECRET = "correct horse battery staple"
SESSION_POLICY = Policy(
    scopes=frozenset({"profile:read", "escrow:read", "escrow:release"}),
    default=frozenset({"profile:read", "escrow:read"}),
    namespaces={"eip155": frozenset({"escrow:release"})},
    dpop_scopes=frozenset({"escrow:release"}),
)


def session_settings(data_dir: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "store": "memory://",
        "chains": ("eip155:1",),
        "policy": SESSION_POLICY,
        "introspection_clients": {CLIENT_ID: hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()},
        "session_ttl": 3600,
        "session_idle_ttl": 600,
    }
    fields.update(overrides)
    return Settings(**fields)


@dataclass
class Issuer:
    """One issuer app and what its tests need to reach into."""

    client: httpx.AsyncClient
    clock: FrozenClock
    store: Store
    settings: Settings

    @property
    def now(self) -> int:
        return int(self.clock())

    async def challenge(self, wallet: EthWallet, scope: str = "", **extra: Any) -> str:
        body = {"account": wallet.caip10(), "scope": scope, **extra}
        issued = await self.client.post("/v1/challenge", json=body)
        assert issued.status_code == 201, issued.text
        return str(issued.json()["message"])

    async def redeem(
        self,
        wallet: EthWallet,
        message: str,
        key: DPoPKey | None = None,
        *,
        nonce: str | None = None,
        form: bool = False,
    ) -> httpx.Response:
        body = {"message": message, "signature": wallet.sign(message)}
        return await self.token(body, key, nonce=nonce, form=form)

    async def sign_in(
        self, wallet: EthWallet, key: DPoPKey | None, scope: str = "escrow:release"
    ) -> dict[str, Any]:
        response = await self.redeem(wallet, await self.challenge(wallet, scope), key)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def refresh(
        self,
        refresh_token: str,
        key: DPoPKey | None,
        *,
        scope: str | None = None,
        nonce: str | None = None,
        form: bool = True,
    ) -> httpx.Response:
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope is not None:
            body["scope"] = scope
        return await self.token(body, key, nonce=nonce, form=form)

    async def token(
        self,
        body: dict[str, str],
        key: DPoPKey | None,
        *,
        nonce: str | None = None,
        form: bool = False,
    ) -> httpx.Response:
        headers = {}
        if key is not None:
            headers["DPoP"] = key.proof("POST", TOKEN_URL, now=self.now, nonce=nonce)
        if form:
            body = {"grant_type": "urn:keyproof:grant-type:signed-challenge", **body}
            return await self.client.post("/v1/token", data=body, headers=headers)
        return await self.client.post("/v1/token", json=body, headers=headers)

    async def introspect(self, token: str) -> dict[str, Any]:
        reply = await self.client.post(
            "/v1/introspect", data={"token": token}, auth=(CLIENT_ID, CLIENT_SECRET)
        )
        assert reply.status_code == 200, reply.text
        return dict(reply.json())


@contextlib.asynccontextmanager
async def running_issuer(
    data_dir: Path,
    clock: FrozenClock,
    *,
    store: Store | None = None,
    **overrides: Any,
) -> AsyncIterator[Issuer]:
    """An issuer app with its key file in ``data_dir`` (created unless there)."""
    settings = session_settings(data_dir, **overrides)
    if not (data_dir / KEY_FILE_NAME).exists():
        KeySet([SigningKey.generate(int(clock()))], clock).save(data_dir / KEY_FILE_NAME)
    shared = store or MemoryStore(clock=clock)
    app = create_app(settings, store=shared, clock=clock)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)
        )
        yield Issuer(client, clock, shared, settings)
    if store is None:
        await shared.close()
