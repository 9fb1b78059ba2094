"""Logins per second and their latency on each shared store: SQLite, Redis, PostgreSQL.

One login is the whole in-process pipeline an HTTP request would run, client IP
included: challenge (rate counters, the challenge written), the agent's ed25519
signature, redeem (failure-counter check, binding read, signature check, tombstone,
atomic consume, token minted). ``in_flight`` logins run at once on one event loop (the
server's, uvloop); stores are interleaved round by round and the best round is kept.
Redis and PostgreSQL are the test servers (``KEYPROOF_REDIS_URL``,
``KEYPROOF_POSTGRES_URL``) with a fresh prefix or schema, removed afterwards; one
that does not answer is reported as skipped.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import asyncpg
import redis
import uvloop
from nacl.signing import SigningKey as AgentKey

from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base64url
from keyproof.errors import Unavailable
from keyproof.server.components import build_service
from keyproof.server.config import LIMIT_SETTINGS, Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.stores import open_store
from keyproof.stores.base import Store

REDIS_URL = os.environ.get("KEYPROOF_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("KEYPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
UNLIMITED = 10**9


async def _measure(store: Store, logins: int, in_flight: int) -> dict[str, float]:
    settings = Settings(
        store="memory://",
        data_dir=Path(tempfile.mkdtemp(prefix="keyproof-bench-")),
        **dict.fromkeys(LIMIT_SETTINGS, UNLIMITED),
    )
    service = build_service(settings, store, KeySet([SigningKey.generate(int(time.time()))]))
    agent = AgentKey.generate()
    account = encode_did_key("ed25519", bytes(agent.verify_key))
    latencies: list[float] = []
    pending = iter(range(logins))

    async def client(n: int) -> None:
        ip = f"198.51.100.{n}"
        for _ in pending:
            start = time.perf_counter()
            challenge = await service.challenge(account, client_ip=ip)
            signature = agent.sign(challenge.message.encode()).signature
            await service.redeem(challenge.message, encode_base64url(signature), client_ip=ip)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(in_flight)))
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "keyproof_us": round(elapsed / logins * 1e6, 2),  # wall time per login
        "logins_per_second": round(logins / elapsed),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def _stores(tag: str) -> dict[str, Callable[[], Store]]:
    directory = Path(tempfile.mkdtemp(prefix="keyproof-bench-"))
    return {
        "sqlite": lambda: open_store(f"sqlite:///{directory}/keyproof.db"),
        "redis": lambda: open_store(f"{REDIS_URL}?prefix=keyproof-bench:{tag}:"),
        "postgres": lambda: open_store(f"{POSTGRES_URL}?schema=keyproof_bench_{tag}"),
    }


async def _cleanup(tag: str) -> None:
    with suppress(redis.RedisError, ValueError):
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"keyproof-bench:{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    with suppress(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
        await conn.execute(f'DROP SCHEMA IF EXISTS "keyproof_bench_{tag}" CASCADE')
        await conn.close()


async def _all(logins: int, in_flight: int, rounds: int) -> tuple[list[Any], list[Any]]:
    tag = uuid.uuid4().hex[:12]
    best: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    try:
        for _ in range(rounds):
            for name, make in _stores(tag).items():
                if name in skipped:
                    continue
                store = make()
                try:
                    await store.ping()
                    result = await _measure(store, logins, in_flight)
                except Unavailable as exc:
                    skipped[name] = f"{name} store unreachable: {exc.description}"
                    continue
                finally:
                    await store.close()
                kept = best.get(name)
                if kept is None or result["logins_per_second"] > kept["logins_per_second"]:
                    best[name] = result
    finally:
        await _cleanup(tag)
    results = [
        {"case": f"login_{name}_store", "in_flight": in_flight, "logins": logins, **row}
        for name, row in best.items()
    ]
    return results, [{"case": f"login_{n}_store", "reason": r} for n, r in skipped.items()]


def login_cases(logins: int, in_flight: int, rounds: int) -> tuple[list[Any], list[Any]]:
    """Rows for each reachable store, and the stores skipped with their reason."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_all(logins, in_flight, rounds))
