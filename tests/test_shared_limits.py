"""Rate limits are shared by replicas: the counters live in the store, not in a process.

Two keyproof processes use one Redis prefix. Requests alternate between them (or race
across both); the limit is reached when the *shared* count passes it, although
neither process alone has seen that many requests. The processes trust 127.0.0.1 as
a proxy so that each scenario can speak for its own client IP (``X-Forwarded-For``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from keyproof.testing import KeyproofServer

from wallets import EthWallet

CHALLENGE_LIMIT = 6
FAILED_LIMIT = 4
ENV = {
    "KEYPROOF_CHALLENGE_LIMIT_PER_IP": str(CHALLENGE_LIMIT),
    "KEYPROOF_FAILED_TOKEN_LIMIT_PER_IP": str(FAILED_LIMIT),
    "KEYPROOF_TRUSTED_PROXIES": "127.0.0.1",
}
PUBLIC = ["--uri", "https://auth.keyproof.test", "--domain", "auth.keyproof.test"]


@pytest.fixture
def two_replicas(
    tmp_path: Path, redis_url: str, redis_prefix: str, server_log: list[Path]
) -> Iterator[list[str]]:
    args = [*PUBLIC, "--store", f"{redis_url}?prefix={redis_prefix}"]
    with ExitStack() as stack:
        servers = [KeyproofServer(tmp_path / "data", args=args, env=ENV) for _ in range(2)]
        server_log.extend([*(s.log_path for s in servers), tmp_path / "data" / "audit.jsonl"])
        yield [stack.enter_context(server).url for server in servers]


def ask_challenge(url: str, client_ip: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/challenge",
        json={"account": EthWallet.create().caip10()},
        headers={"X-Forwarded-For": client_ip},
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.redis
def test_challenge_limit_per_ip_is_shared_by_replicas(two_replicas: list[str]):
    client_ip = "198.51.100.10"
    served: list[tuple[int, int]] = []  # (replica, status) in request order
    for i in range(CHALLENGE_LIMIT + 4):
        response = ask_challenge(two_replicas[i % 2], client_ip)
        served.append((i % 2, response.status_code))
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["reason"] == "rate_limited"
    statuses = [status for _, status in served]
    assert statuses == [201] * CHALLENGE_LIMIT + [429] * 4
    # Neither replica alone reached the limit: a per-process count would have said yes.
    for replica in (0, 1):
        assert sum(1 for r, s in served if r == replica and s == 201) < CHALLENGE_LIMIT
    # Another client IP has its own budget on both replicas.
    assert ask_challenge(two_replicas[1], "198.51.100.11").status_code == 201


@pytest.mark.slow
@pytest.mark.redis
def test_concurrent_challenges_across_replicas_stop_at_the_limit(two_replicas: list[str]):
    statuses = asyncio.run(_burst(two_replicas, "198.51.100.20", CHALLENGE_LIMIT * 4))
    assert statuses.count(201) == CHALLENGE_LIMIT, statuses
    assert statuses.count(429) == CHALLENGE_LIMIT * 3, statuses


async def _burst(urls: list[str], client_ip: str, n: int) -> list[int]:
    headers = {"X-Forwarded-For": client_ip}
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % 2]}/v1/challenge",
                    json={"account": EthWallet.create().caip10()},
                    headers=headers,
                )
                for i in range(n)
            )
        )
    return [r.status_code for r in responses]


@pytest.mark.slow
@pytest.mark.redis
def test_failed_token_attempts_per_ip_are_shared_by_replicas(two_replicas: list[str]):
    client_ip = "198.51.100.30"
    headers = {"X-Forwarded-For": client_ip}
    wallet = EthWallet.create()
    issued = ask_challenge(two_replicas[0], "198.51.100.31")
    assert issued.status_code == 201
    # A challenge for another account: every attempt is refused, none burns its nonce.
    message = issued.json()["message"]
    forged = {"message": message, "signature": wallet.sign(message)}
    statuses = []
    for i in range(FAILED_LIMIT + 2):
        response = httpx.post(
            f"{two_replicas[i % 2]}/v1/token", json=forged, headers=headers, timeout=10
        )
        statuses.append(response.status_code)
    assert statuses == [401] * FAILED_LIMIT + [429] * 2
