"""The same action submitted 50 times at once is accepted exactly once, on every store."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyproof.actions import Action, ActionVerifier
from keyproof.errors import KeyproofError
from keyproof.stores.base import Store
from keyproof.stores.redis import RedisStore
from keyproof.stores.sqlite import SqliteStore
from keyproof.testing import KeyproofServer

from conftest import START, FrozenClock
from wallets import EthWallet

SERVICE = "Acme Escrow"
AUDIENCE = "http://127.0.0.1:8000"
ATTEMPTS = 50


def signed_action(wallet: EthWallet, audience: str, deadline: int) -> tuple[dict[str, Any], str]:
    doc = {
        "service": SERVICE,
        "audience": audience,
        "chain": "eip155:1",
        "type": "escrow.release",
        "object": "escrow-42",
        "id": secrets.token_hex(16),
        "deadline": deadline,
        "amount": "100",
        "currency": "USDC",
    }
    return doc, wallet.sign_typed_data(Action.parse(doc).typed_data())


async def submit_concurrently(verifiers: list[ActionVerifier], wallet: EthWallet) -> list[str]:
    doc, signature = signed_action(wallet, AUDIENCE, START + 300)
    claims = {"sub": wallet.caip10(), "aud": AUDIENCE}

    async def attempt(verifier: ActionVerifier) -> str:
        try:
            await verifier.verify(
                doc, signature, claims=claims, action_type="escrow.release", object_id="escrow-42"
            )
        except KeyproofError as refused:
            return refused.code
        return "accepted"

    return await asyncio.gather(*(attempt(verifiers[i % len(verifiers)]) for i in range(ATTEMPTS)))


def assert_exactly_one(outcomes: list[str]) -> None:
    assert outcomes.count("accepted") == 1
    assert outcomes.count("action_replayed") == ATTEMPTS - 1


@pytest.fixture
async def sqlite_stores(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[list[Store]]:
    # Several connections to one database file, as several worker processes would hold.
    stores: list[Store] = [SqliteStore(tmp_path / "actions.db", clock=clock) for _ in range(4)]
    yield stores
    for store in stores:
        await store.close()


async def test_same_action_50_times_concurrently_sqlite(sqlite_stores, clock):
    verifiers = [ActionVerifier(s, service=SERVICE, clock=clock) for s in sqlite_stores]
    assert_exactly_one(await submit_concurrently(verifiers, EthWallet.create()))


@pytest.mark.redis
async def test_same_action_50_times_concurrently_redis(
    redis_url: str, redis_prefix: str, clock: FrozenClock
):
    stores = [RedisStore(redis_url, prefix=redis_prefix) for _ in range(4)]
    try:
        verifiers = [ActionVerifier(s, service=SERVICE, clock=clock) for s in stores]
        assert_exactly_one(await submit_concurrently(verifiers, EthWallet.create()))
    finally:
        for store in stores:
            await store.close()


async def test_same_action_50_times_concurrently_memory(clock: FrozenClock):
    from keyproof.stores.memory import MemoryStore

    store = MemoryStore(clock=clock)
    verifier = ActionVerifier(store, service=SERVICE, clock=clock)
    assert_exactly_one(await submit_concurrently([verifier], EthWallet.create()))
    await store.close()


# --- over HTTP against real `keyproof serve` processes ----------------------------------


RELEASE_POLICY = """[policy]
scopes = ["profile:read", "escrow:release"]
default = ["profile:read"]
[policy.namespaces]
eip155 = ["escrow:release"]
"""


def login(url: str, wallet: EthWallet) -> str:
    body = {"account": wallet.caip10(), "scope": "escrow:release"}
    issued = httpx.post(f"{url}/v1/challenge", json=body)
    assert issued.status_code == 201, issued.text
    message = issued.json()["message"]
    token = httpx.post(
        f"{url}/v1/token", json={"message": message, "signature": wallet.sign(message)}
    )
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


async def post_concurrently(url: str, token: str, body: dict[str, Any]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=ATTEMPTS)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(f"{url}/v1/actions/verify", json=body, headers=headers)
                for _ in range(ATTEMPTS)
            )
        )


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_same_action_50_times_concurrently_over_http(tmp_path: Path, server_log, workers: int):
    import time

    config = tmp_path / "keyproof.toml"
    config.write_text(RELEASE_POLICY)
    args = ["--workers", str(workers), "--config", str(config)]
    with KeyproofServer(tmp_path / "data", args=args) as server:
        server_log.append(server.log_path)
        wallet = EthWallet.create()
        token = login(server.url, wallet)
        # The server runs on wall time; the deadline is the one value taken from it.
        doc, signature = signed_action(wallet, server.url, int(time.time()) + 600)
        expect = {
            "service": SERVICE,
            "audience": server.url,
            "type": "escrow.release",
            "object": "escrow-42",
            "scope": "escrow:release",
        }
        body = {"action": doc, "signature": signature, "expect": expect}
        responses = asyncio.run(post_concurrently(server.url, token, body))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, [r.text for r in responses if r.status_code != 401][:3]
    assert statuses.count(401) == ATTEMPTS - 1
    assert {r.json().get("reason") for r in responses if r.status_code == 401} == {
        "action_replayed"
    }
