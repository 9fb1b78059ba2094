"""Faults: the store goes away, a process dies. keyproof fails closed and recovers.

The Redis test runs its own ``redis-server`` on a free port and stops it; the
machine's shared Redis is never touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from keyproof.testing import KeyproofServer, free_port

from wallets import EthWallet

REDIS_SERVER = "redis-server"
LIMITS = {
    "KEYPROOF_CHALLENGE_LIMIT_PER_IP": "100000",
    "KEYPROOF_FAILED_TOKEN_LIMIT_PER_IP": "100000",
}


class OwnRedis:
    """A private, persistent redis-server on 127.0.0.1 that a test may stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        command = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--protected-mode", "yes",
        ]  # fmt: skip
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("own redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def keys(self) -> list[bytes]:
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return list(client.scan_iter(count=1000))
        finally:
            client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which(REDIS_SERVER) is None:
        reason = f"{REDIS_SERVER} is not installed; the outage test runs its own"
        if os.environ.get("KEYPROOF_REQUIRE_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


def wait_until_ready(url: str) -> None:
    for _ in range(200):
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("keyproof did not become ready again")


def challenge(url: str, wallet: EthWallet) -> httpx.Response:
    return httpx.post(f"{url}/v1/challenge", json={"account": wallet.caip10()}, timeout=10)


def redeem(url: str, message: str, signature: str) -> httpx.Response:
    body = {"message": message, "signature": signature}
    return httpx.post(f"{url}/v1/token", json=body, timeout=10)


@pytest.mark.slow
def test_redis_outage_fails_closed_and_recovers(tmp_path: Path, own_redis: OwnRedis, server_log):
    store = f"redis://127.0.0.1:{own_redis.port}/0?prefix=faults:"
    with KeyproofServer(tmp_path / "data", args=["--store", store], env=LIMITS) as server:
        server_log.extend([server.log_path, tmp_path / "data" / "audit.jsonl"])
        wallet = EthWallet.create()
        issued = challenge(server.url, wallet)
        assert issued.status_code == 201
        message = issued.json()["message"]
        nonce = issued.json()["nonce"]
        signature = wallet.sign(message)
        before = sorted(own_redis.keys())

        own_redis.kill()
        for response in (
            challenge(server.url, EthWallet.create()),
            redeem(server.url, message, signature),
            httpx.get(f"{server.url}/readyz"),
        ):
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["reason"] == "store_unavailable"
        burst = asyncio.run(_concurrent_redeems(server.url, message, signature, 20))
        assert set(burst) == {503}
        assert httpx.get(f"{server.url}/healthz").status_code == 200

        own_redis.start()
        assert sorted(own_redis.keys()) == before  # nothing written while it was away
        assert not [k for k in before if b"used_nonce" in k]
        assert any(nonce.encode() in k for k in before)
        wait_until_ready(server.url)
        granted = redeem(server.url, message, signature)
        assert granted.status_code == 200, granted.text
        replay = redeem(server.url, message, signature)
        assert (replay.status_code, replay.json()["reason"]) == (401, "nonce_used")
        assert challenge(server.url, EthWallet.create()).status_code == 201


@pytest.mark.slow
def test_redis_outage_is_logged_with_its_cause_counted_and_its_end_logged(
    tmp_path: Path, own_redis: OwnRedis, server_log
):
    store = f"redis://127.0.0.1:{own_redis.port}/0?prefix=outage-log:"
    with KeyproofServer(tmp_path / "data", args=["--store", store], env=LIMITS) as server:
        server_log.append(server.log_path)
        own_redis.kill()
        for _ in range(20):
            assert challenge(server.url, EthWallet.create()).status_code == 503
        during = metric_samples(httpx.get(f"{server.url}/metrics").text)
        own_redis.start()
        wait_until_ready(server.url)
        after = metric_samples(httpx.get(f"{server.url}/metrics").text)
        entries = [json.loads(line) for line in server.log().splitlines() if line[:1] == "{"]
    reports = [e for e in entries if e["logger"] == "keyproof.server.store"]
    assert [e["level"] for e in reports] == ["error", "warning"], reports
    assert reports[0]["message"].startswith("store unavailable: ConnectionError: ")
    assert f"127.0.0.1:{own_redis.port}" in reports[0]["cause"]
    assert reports[1]["message"].startswith("store available again after ")
    failed = sum(v for (name, _), v in during.items() if name == "keyproof_store_failures_total")
    assert failed >= 20
    assert during[("keyproof_store_up", ())] == 0
    assert after[("keyproof_store_up", ())] == 1


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _concurrent_redeems(url: str, message: str, signature: str, n: int) -> list[int]:
    body = {"message": message, "signature": signature}
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"{url}/v1/token", json=body) for _ in range(n))
        )
    return [r.status_code for r in responses]


# --- SIGKILL under load on SQLite --------------------------------------------------------

# Both processes serve the same public URI, so tokens of the first verify at the second.
PUBLIC = ["--uri", "https://auth.keyproof.test", "--domain", "auth.keyproof.test"]
CLIENT_ID = "rs1"
CLIENT_SECRET = "introspection-secret-for-tests"
INTROSPECTION = {
    "KEYPROOF_INTROSPECTION_CLIENTS": f"{CLIENT_ID}:"
    + hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
}


KILL_AFTER_REVOKED = 20
WORKERS = 16


class Load:
    """What the clients saw before the crash; every other granted token is revoked."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self.granted = itertools.count()
        self.revoked = 0
        self.enough = asyncio.Event()

    def revoked_one(self) -> None:
        self.revoked += 1
        if self.revoked >= KILL_AFTER_REVOKED:
            self.enough.set()


async def _login_and_revoke(client: httpx.AsyncClient, url: str, load: Load) -> None:
    """One login, recording what the server confirmed."""
    record: dict[str, object] = {}
    load.records.append(record)
    wallet = EthWallet.create()
    issued = await client.post(f"{url}/v1/challenge", json={"account": wallet.caip10()})
    message = issued.json()["message"]
    body = {"message": message, "signature": wallet.sign(message)}
    record["attempt"] = body
    granted = await client.post(f"{url}/v1/token", json=body)
    if granted.status_code != 200:
        return
    record["token"] = token = granted.json()["access_token"]
    if next(load.granted) % 2:
        revoked = await client.post(f"{url}/v1/revoke", json={"token": token})
        if revoked.status_code == 200:
            record["revoked"] = True
            load.revoked_one()


async def _load_until_killed(server: KeyproofServer, load: Load) -> None:
    """Kill the server, mid-load, once it has confirmed KILL_AFTER_REVOKED revocations."""
    async with httpx.AsyncClient(timeout=10) as client:

        async def worker() -> None:
            for _ in range(200):
                try:
                    await _login_and_revoke(client, server.url, load)
                except (httpx.TransportError, ValueError, KeyError):
                    return

        workers = asyncio.gather(*(worker() for _ in range(WORKERS)))
        enough = asyncio.ensure_future(load.enough.wait())
        # Bounded by the workers' own loops; the other workers are mid-request when it fires.
        await asyncio.wait([workers, enough], return_when=asyncio.FIRST_COMPLETED)
        server.kill()
        await workers
        enough.cancel()


@pytest.mark.slow
def test_sigkill_under_load_loses_no_consumption_or_revocation(tmp_path: Path, server_log):
    data = tmp_path / "data"
    env = {**LIMITS, **INTROSPECTION}
    load = Load()
    first = KeyproofServer(data, args=PUBLIC, env=env).start()
    server_log.extend([first.log_path, data / "audit.jsonl"])
    asyncio.run(_load_until_killed(first, load))
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    records = load.records
    confirmed = [r for r in records if "token" in r]
    revoked = [r for r in records if "revoked" in r]
    assert len(revoked) >= KILL_AFTER_REVOKED

    with KeyproofServer(data, args=PUBLIC, env=env) as second:
        server_log.append(second.log_path)
        for record in records:
            if "attempt" not in record:
                continue
            again = httpx.post(f"{second.url}/v1/token", json=record["attempt"], timeout=10)
            if "token" in record:  # consumed before the crash: never again
                assert (again.status_code, again.json()["reason"]) == (401, "nonce_used")
            else:  # the crash came first: at most this one token now
                assert again.status_code in {200, 401}
        auth = (CLIENT_ID, CLIENT_SECRET)
        for record in revoked:
            answer = httpx.post(
                f"{second.url}/v1/introspect", data={"token": record["token"]}, auth=auth
            )
            assert answer.json() == {"active": False}
        live = [r for r in confirmed if "revoked" not in r][:5]
        for record in live:
            answer = httpx.post(
                f"{second.url}/v1/introspect", data={"token": record["token"]}, auth=auth
            )
            assert answer.json()["active"] is True

    with sqlite3.connect(data / "keyproof.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
