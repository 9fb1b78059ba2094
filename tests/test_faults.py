"""Faults: the store goes away, a process dies. keyproof fails closed and recovers.

The Redis test runs its own ``redis-server`` on a free port and stops it, the
PostgreSQL crash test its own PostgreSQL server; the machine's shared servers are never
stopped.
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

from postgres_server import OwnPostgres, with_schema
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
        self.refusals: list[tuple[int, str | None, str | None]] = []

    def refused(self, response: httpx.Response, expected: int) -> bool:
        """False for the expected status; else note (status, reason, Retry-After)."""
        if response.status_code == expected:
            return False
        reason = response.json().get("reason")
        self.refusals.append((response.status_code, reason, response.headers.get("retry-after")))
        return True

    def revoked_one(self) -> None:
        self.revoked += 1
        if self.revoked >= KILL_AFTER_REVOKED:
            self.enough.set()


async def _login_and_revoke(client: httpx.AsyncClient, url: str, load: Load) -> None:
    """One login, recording what the server confirmed and every refusal it gave."""
    record: dict[str, object] = {}
    load.records.append(record)
    wallet = EthWallet.create()
    issued = await client.post(f"{url}/v1/challenge", json={"account": wallet.caip10()})
    if load.refused(issued, 201):
        return
    message = issued.json()["message"]
    body = {"message": message, "signature": wallet.sign(message)}
    record["attempt"] = body
    granted = await client.post(f"{url}/v1/token", json=body)
    if load.refused(granted, 200):
        return
    record["token"] = token = granted.json()["access_token"]
    if next(load.granted) % 2:
        revoked = await client.post(f"{url}/v1/revoke", json={"token": token})
        if not load.refused(revoked, 200):
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
    _kill_under_load_and_restart(data, PUBLIC, server_log)
    with sqlite3.connect(data / "keyproof.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _kill_under_load_and_restart(data: Path, args: list[str], server_log: list[Path]) -> None:
    """SIGKILL keyproof mid-load; restarted on the same store, it forgets nothing."""
    env = {**LIMITS, **INTROSPECTION}
    load = Load()
    first = KeyproofServer(data, args=args, env=env).start()
    server_log.extend([first.log_path, data / "audit.jsonl"])
    asyncio.run(_load_until_killed(first, load))
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    assert len([r for r in load.records if "revoked" in r]) >= KILL_AFTER_REVOKED
    with KeyproofServer(data, args=args, env=env) as second:
        server_log.append(second.log_path)
        _assert_no_replay_and_no_lost_revocation(second.url, load.records)


def _assert_no_replay_and_no_lost_revocation(
    url: str, records: list[dict[str, object]], replayed: frozenset[str] = frozenset({"nonce_used"})
) -> None:
    """Replays every attempt; checks every confirmed revocation and some live tokens.

    ``replayed``: the reasons a replay of a consumed challenge may get.
    """
    for record in records:
        if "attempt" not in record:
            continue
        again = httpx.post(f"{url}/v1/token", json=record["attempt"], timeout=10)
        if "token" in record:  # consumed before the fault: never again
            assert again.status_code == 401, again.text
            assert again.json()["reason"] in replayed
        else:  # the fault came first: at most this one token now
            assert again.status_code in {200, 401}
    confirmed = [r for r in records if "token" in r]
    revoked = [r for r in confirmed if "revoked" in r]
    live = [r for r in confirmed if "revoked" not in r][:5]
    assert revoked and live
    for record in revoked + live:
        answer = httpx.post(
            f"{url}/v1/introspect",
            data={"token": record["token"]},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=10,
        )
        if "revoked" in record:
            assert answer.json() == {"active": False}
        else:
            assert answer.json()["active"] is True


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_under_load_on_postgres_loses_no_consumption_or_revocation(
    tmp_path: Path, postgres_url: str, postgres_schema: str, server_log
):
    store = with_schema(postgres_url, postgres_schema)
    _kill_under_load_and_restart(tmp_path / "data", [*PUBLIC, "--store", store], server_log)


# --- PostgreSQL crashes under load ------------------------------------------------------

RESTARTED_GRANTS = 20
PHASE_SECONDS = 60.0


class Outage(Load):
    """A load that watches the database go away and come back."""

    def __init__(self) -> None:
        super().__init__()
        self.unavailable = asyncio.Event()
        self.restarted = False
        self.grants_after_restart = 0
        self.recovered = asyncio.Event()

    def refused(self, response: httpx.Response, expected: int) -> bool:
        refused = super().refused(response, expected)
        if refused and response.status_code == 503:
            self.unavailable.set()
        elif not refused and expected == 200 and self.restarted:
            self.grants_after_restart += 1
            if self.grants_after_restart >= RESTARTED_GRANTS:
                self.recovered.set()
        return refused


async def _load_through_a_crash(url: str, database: OwnPostgres, outage: Outage) -> None:
    """Crash the database mid-load, restart it while the load goes on; all bounded."""
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:

        async def worker() -> None:
            for _ in range(400):
                if stop.is_set():
                    return
                await _login_and_revoke(client, url, outage)

        workers = asyncio.gather(*(worker() for _ in range(WORKERS)))
        try:
            await asyncio.wait_for(outage.enough.wait(), PHASE_SECONDS)
            await asyncio.to_thread(database.crash)
            await asyncio.wait_for(outage.unavailable.wait(), PHASE_SECONDS)
            await asyncio.to_thread(database.start)
            outage.restarted = True
            await asyncio.wait_for(outage.recovered.wait(), PHASE_SECONDS)
        finally:
            stop.set()
            await workers


@pytest.mark.slow
def test_postgres_crash_under_load_fails_closed_and_recovers_without_restart(
    tmp_path: Path, own_postgres: OwnPostgres, server_log
):
    args = [*PUBLIC, "--store", with_schema(own_postgres.url, "faults")]
    env = {**LIMITS, **INTROSPECTION}
    with KeyproofServer(tmp_path / "data", args=args, env=env) as server:
        server_log.extend([server.log_path, tmp_path / "data" / "audit.jsonl"])
        pid = server.process.pid if server.process else None
        outage = Outage()
        asyncio.run(_load_through_a_crash(server.url, own_postgres, outage))

        assert server.process is not None and server.process.pid == pid
        assert server.process.poll() is None  # recovered by itself, never restarted
        assert outage.grants_after_restart >= RESTARTED_GRANTS
        failures = {(status, reason) for status, reason, _ in outage.refusals}
        # Crash recovery empties the unlogged challenges: a challenge issued before the
        # crash is unknown after it. Nothing else but the outage itself is refused.
        assert failures <= {(503, "store_unavailable"), (401, "nonce_unknown")}, failures
        assert (503, "store_unavailable") in failures
        assert all(
            retry and int(retry) >= 1 for status, _, retry in outage.refusals if status == 503
        )
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        # Every revocation confirmed before or after the crash holds; no consumed
        # challenge, whichever way it was refused, yields a second token.
        _assert_no_replay_and_no_lost_revocation(
            server.url, outage.records, frozenset({"nonce_used", "nonce_unknown"})
        )
