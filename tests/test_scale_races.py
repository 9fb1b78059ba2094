"""Two keyproof processes sharing one store give the guarantees of one.

Each round sends 50 concurrent copies of one signed message (or one signed action, or
one refresh token, each with its own DPoP proof) spread across both processes: exactly
one is accepted, every other is refused as a replay (a reused refresh token also ends
its session, on both). Replicas behind a load balancer share their public URI, so both processes
are started with the same ``--uri``/``--domain`` and the same signing-key file.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from keyproof.actions import Action
from keyproof.server.config import Settings
from keyproof.stores._postgres_schema import DURABLE, EPHEMERAL
from keyproof.testing import KeyproofServer

from postgres_server import run_async, with_schema
from wallets import DPoPKey, EthWallet

ROUNDS = 100
REFRESH_ROUNDS = 5
CONCURRENCY = 50
PUBLIC_URI = "https://auth.keyproof.test"
SERVICE = "Acme Escrow"
EXPECT = {
    "service": SERVICE,
    "audience": PUBLIC_URI,
    "type": "escrow.release",
    "object": "escrow-7",
    "scope": "escrow:release",
}
RELEASE_POLICY = """[policy]
scopes = ["profile:read", "escrow:release"]
default = ["profile:read"]
[policy.namespaces]
eip155 = ["escrow:release"]
"""
LIMITS = {
    "KEYPROOF_CHALLENGE_LIMIT_PER_IP": "100000",
    "KEYPROOF_FAILED_TOKEN_LIMIT_PER_IP": "100000",
}


def replicas(data_dir: Path, store: str | None, server_log: list[Path]) -> Iterator[list[str]]:
    config = data_dir.parent / "keyproof.toml"
    config.write_text(RELEASE_POLICY)
    args = ["--uri", PUBLIC_URI, "--domain", "auth.keyproof.test", "--config", str(config)]
    if store is not None:
        args += ["--store", store]
    with ExitStack() as stack:
        servers = [KeyproofServer(data_dir, args=args, env=LIMITS) for _ in range(2)]
        server_log.extend([*(server.log_path for server in servers), data_dir / "audit.jsonl"])
        yield [stack.enter_context(server).url for server in servers]


async def post_all(client: httpx.AsyncClient, urls: list[str], path: str, body: Any, **kw: Any):
    responses = await asyncio.gather(
        *(client.post(f"{urls[i % 2]}{path}", json=body, **kw) for i in range(CONCURRENCY))
    )
    return [r.status_code for r in responses], [r.json().get("reason") for r in responses]


async def login_rounds(client: httpx.AsyncClient, urls: list[str]) -> None:
    for round_no in range(ROUNDS):
        wallet = EthWallet.create()
        issued = await client.post(
            f"{urls[round_no % 2]}/v1/challenge", json={"account": wallet.caip10()}
        )
        assert issued.status_code == 201, issued.text
        message = issued.json()["message"]
        body = {"message": message, "signature": wallet.sign(message)}
        statuses, reasons = await post_all(client, urls, "/v1/token", body)
        assert statuses.count(200) == 1, (round_no, statuses, reasons)
        assert set(reasons) - {None} == {"nonce_used"}


async def action_rounds(client: httpx.AsyncClient, urls: list[str], wallet: EthWallet, token: str):
    headers = {"Authorization": f"Bearer {token}"}
    for round_no in range(ROUNDS):
        doc = {
            "service": SERVICE,
            "audience": PUBLIC_URI,
            "chain": "eip155:1",
            "type": "escrow.release",
            "object": "escrow-7",
            "id": secrets.token_hex(16),
            "deadline": int(time.time()) + 600,  # the servers run on wall time
        }
        signature = wallet.sign_typed_data(Action.parse(doc).typed_data())
        body = {"action": doc, "signature": signature, "expect": EXPECT}
        statuses, reasons = await post_all(
            client, urls, "/v1/actions/verify", body, headers=headers
        )
        assert statuses.count(200) == 1, (round_no, statuses, reasons)
        assert set(reasons) - {None} == {"action_replayed"}


async def refresh_rounds(client: httpx.AsyncClient, urls: list[str]) -> None:
    token_url = f"{PUBLIC_URI}/v1/token"  # what the metadata names, whatever replica answers
    for round_no in range(REFRESH_ROUNDS):
        wallet, key = EthWallet.create(), DPoPKey()
        issued = await client.post(f"{urls[0]}/v1/challenge", json={"account": wallet.caip10()})
        message = issued.json()["message"]
        signed = {"message": message, "signature": wallet.sign(message)}
        proof = key.proof("POST", token_url, now=int(time.time()))
        first = await client.post(f"{urls[1]}/v1/token", json=signed, headers={"DPoP": proof})
        assert first.status_code == 200, first.text
        # The same proof at the other replica is a replay.
        form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
        replayed = await client.post(f"{urls[0]}/v1/token", data=form, headers={"DPoP": proof})
        assert replayed.json()["reason"] == "invalid_dpop_proof", replayed.text
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % 2]}/v1/token",
                    data=form,
                    headers={"DPoP": key.proof("POST", token_url, now=int(time.time()))},
                )
                for i in range(CONCURRENCY)
            )
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1, (round_no, statuses)
        reasons = {r.json()["reason"] for r in responses if r.status_code != 200}
        # A loser that read the token before the winner took it finds the tombstone and
        # ends the session; one that is checked after that finds the session ended.
        assert "refresh_token_reused" in reasons, reasons
        assert reasons <= {"refresh_token_reused", "session_revoked"}, reasons
        winner = next(r for r in responses if r.status_code == 200).json()["refresh_token"]
        form["refresh_token"] = winner
        for url in urls:  # the session ended on both replicas
            late = await client.post(
                f"{url}/v1/token",
                data=form,
                headers={"DPoP": key.proof("POST", token_url, now=int(time.time()))},
            )
            assert late.json()["reason"] == "session_revoked", late.text
    await revoked_on_one_ended_on_both(client, urls)


async def revoked_on_one_ended_on_both(client: httpx.AsyncClient, urls: list[str]) -> None:
    """``/v1/revoke`` of a refresh token at one replica ends the session at the other."""
    token_url = f"{PUBLIC_URI}/v1/token"
    wallet, key = EthWallet.create(), DPoPKey("Ed25519")
    issued = await client.post(f"{urls[0]}/v1/challenge", json={"account": wallet.caip10()})
    message = issued.json()["message"]
    signed = {"message": message, "signature": wallet.sign(message)}
    proof = key.proof("POST", token_url, now=int(time.time()))
    session = await client.post(f"{urls[0]}/v1/token", json=signed, headers={"DPoP": proof})
    refresh_token = session.json()["refresh_token"]
    revoked = await client.post(f"{urls[1]}/v1/revoke", data={"token": refresh_token})
    assert revoked.status_code == 200, revoked.text
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    proof = key.proof("POST", token_url, now=int(time.time()))
    late = await client.post(f"{urls[0]}/v1/token", data=form, headers={"DPoP": proof})
    assert late.json()["reason"] == "refresh_token_invalid", late.text


async def race(urls: list[str]) -> None:
    # Drop idle connections before uvicorn's 5 s keep-alive does, so that a slow round
    # on a loaded machine never reuses a connection the server is closing.
    limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await login_rounds(client, urls)
        await refresh_rounds(client, urls)
        wallet = EthWallet.create()
        wanted = {"account": wallet.caip10(), "scope": "escrow:release"}
        issued = await client.post(f"{urls[0]}/v1/challenge", json=wanted)
        message = issued.json()["message"]
        body = {"message": message, "signature": wallet.sign(message)}
        granted = await client.post(f"{urls[1]}/v1/token", json=body)
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        await action_rounds(client, urls, wallet, token)
        revoked = await client.post(f"{urls[0]}/v1/revoke", json={"token": token})
        assert revoked.status_code == 200, revoked.text


@pytest.mark.slow
@pytest.mark.redis
def test_two_replicas_sharing_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str, redis_client: redis.Redis, server_log
):
    store = f"{redis_url}?prefix={redis_prefix}"
    for urls in replicas(tmp_path / "data", store, server_log):
        asyncio.run(race(urls))
    assert_every_key_expires(redis_client, redis_prefix)


def assert_every_key_expires(client: redis.Redis, prefix: str) -> None:
    """Every key the replicas left behind has a TTL (PTTL -1 means none)."""
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
        ttls = dict(zip(keys, pipe.execute(), strict=True))
    kinds = {key.decode()[len(prefix) :].split(":", 1)[0] for key in keys}
    expected = {"used_nonce", "action", "revoked", "counter", "dpop_proof", "refresh_used"}
    assert kinds >= expected | {"session_revoked"}, kinds
    forever = [key for key, ttl in ttls.items() if ttl <= 0 and ttl != -2]  # -2: just expired
    assert not forever, forever[:5]


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_sharing_postgres(
    tmp_path: Path, postgres_url: str, postgres_schema: str, server_log
):
    store = with_schema(postgres_url, postgres_schema)
    for urls in replicas(tmp_path / "data", store, server_log):
        asyncio.run(race(urls))
    assert_every_row_expires(postgres_url, postgres_schema)


def assert_every_row_expires(url: str, schema: str) -> None:
    """Every row the replicas left behind has a finite deadline within the longest TTL."""
    rows = run_async(_deadlines(url, schema))
    assert {kind for kind, _, _ in rows} >= {"used_nonce", "action", "revoked", "counter"}, rows
    # Sessions (their tombstones and revocations) last up to session_ttl, longer than the
    # action horizon plus its replay margin, which bounds every other kind.
    longest = {
        kind: Settings().session_ttl if kind.startswith(("refresh", "session")) else 3600 + 600
        for kind, _, _ in rows
    }
    forever = [row for row in rows if not row[1] or row[2] > longest[row[0]]]
    assert not forever, forever


async def _deadlines(url: str, schema: str) -> list[tuple[str, bool, float]]:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch(
            "SELECT kind, bool_and(isfinite(expires_at)),"
            " extract(epoch FROM max(expires_at) - now())::float8"
            f' FROM (SELECT kind, expires_at FROM "{schema}".{DURABLE}'
            f' UNION ALL SELECT kind, expires_at FROM "{schema}".{EPHEMERAL}) AS entries'
            " GROUP BY kind"
        )
    finally:
        await conn.close()
    return [(row[0], row[1], row[2]) for row in found]


@pytest.mark.slow
def test_two_processes_sharing_sqlite(tmp_path: Path, server_log):
    for urls in replicas(tmp_path / "data", None, server_log):
        asyncio.run(race(urls))
