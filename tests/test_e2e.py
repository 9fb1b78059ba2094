"""End to end against real ``keyproof serve`` processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import jwt
import pytest

from keyproof.testing import KeyproofServer

from conftest import pyjwt_claims
from wallets import EthWallet


async def _redeem_concurrently(urls: list[str], message: str, signature: str, n: int):
    body = {"message": message, "signature": signature}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post(f"{urls[i % len(urls)]}/v1/token", json=body) for i in range(n))
        )
    return [r.status_code for r in responses], [r.json() for r in responses]


def _pids_that_served(log: str, path: str) -> set[int]:
    pids = set()
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "keyproof.access" and entry.get("path") == path:
                pids.add(entry["pid"])
    return pids


def _login(url: str, wallet: EthWallet, scope: str = "") -> tuple[str, str]:
    issued = httpx.post(f"{url}/v1/challenge", json={"account": wallet.caip10(), "scope": scope})
    assert issued.status_code == 201, issued.text
    message = issued.json()["message"]
    return message, wallet.sign(message)


def test_ethereum_wallet_gets_token_that_pyjwt_verifies(tmp_path: Path, server_log):
    with KeyproofServer(tmp_path / "data") as server:
        server_log.append(server.log_path)
        wallet = EthWallet.create()
        message, signature = _login(server.url, wallet, "profile:read")
        response = httpx.post(
            f"{server.url}/v1/token", json={"message": message, "signature": signature}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer"
        metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
        token = body["access_token"]
        claims = pyjwt_claims(
            token, metadata["jwks_uri"], audience=server.url, issuer=metadata["issuer"]
        )
        assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
        assert claims["sub"] == wallet.caip10()
        assert claims["scope"] == body["scope"] == "profile:read"
        assert claims["client_id"] == wallet.caip10()
        key_file = tmp_path / "data" / "signing-keys.json"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "data" / "keyproof.db").exists()


@pytest.mark.slow
def test_two_workers_sharing_sqlite_issue_one_token(tmp_path: Path, server_log):
    """Rounds of 50 concurrent redeems until both worker processes have served some."""
    with KeyproofServer(tmp_path / "data", args=["--workers", "2"]) as server:
        server_log.append(server.log_path)
        for _ in range(20):
            wallet = EthWallet.create()
            message, signature = _login(server.url, wallet)
            statuses, bodies = asyncio.run(
                _redeem_concurrently([server.url], message, signature, 50)
            )
            assert statuses.count(200) == 1
            assert statuses.count(401) == 49
            assert {b["reason"] for b in bodies if "reason" in b} == {"nonce_used"}
            if len(_pids_that_served(server.log(), "/v1/token")) == 2:
                return
    pytest.fail("one worker process served every redeem of 20 rounds")


@pytest.mark.slow
def test_two_servers_sharing_sqlite_issue_one_token_per_round(tmp_path: Path, server_log):
    data = tmp_path / "data"
    with KeyproofServer(data) as first, KeyproofServer(data) as second:
        server_log.extend([first.log_path, second.log_path])
        for _ in range(5):
            wallet = EthWallet.create()
            message, signature = _login(first.url, wallet)
            statuses, _ = asyncio.run(
                _redeem_concurrently([first.url, second.url], message, signature, 50)
            )
            assert statuses.count(200) == 1
            assert statuses.count(401) == 49


def test_invalid_setting_fails_at_startup(tmp_path: Path):
    server = KeyproofServer(tmp_path, args=["--workers", "0"], startup_timeout=10)
    with pytest.raises(RuntimeError, match=r"workers must be 1\.\.64"):
        server.start()
