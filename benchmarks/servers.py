"""Servers of the HTTP cases on 127.0.0.1 and free ports; each stopped by its pid.

keyproof runs as shipped (``keyproof serve``, uvloop) with its rate limits raised by
settings so that one load generator on one IP is not refused: every check still runs,
the counters are still written, only the thresholds are high. The echo and resource
apps, and the minimal login app (``benchmarks.minimal_login``), run with uvicorn's same
loop and HTTP parser, access log off, and with several workers each on a socket of its
own, as keyproof's (``benchmarks.workers``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from keyproof.server.config import LIMIT_SETTINGS
from keyproof.testing import KeyproofServer, ServerProcess, free_port

REDIS_URL = os.environ.get("KEYPROOF_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("KEYPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
HIGH_LIMIT = 10**9
ROOT = Path(__file__).resolve().parents[1]


def store_url(store: str, directory: Path, tag: str) -> str:
    if store == "sqlite":
        return f"sqlite:///{directory}/keyproof.db"
    if store == "redis":
        return f"{REDIS_URL}?prefix=keyproof-bench:{tag}:"
    if store == "postgres":
        return f"{POSTGRES_URL}?schema=keyproof_bench_{tag}"
    raise ValueError(store)


def _config(directory: Path) -> Path:
    path = directory / "keyproof.toml"
    lines = ["[keyproof]", 'log_level = "warning"']
    lines += [f"{name} = {HIGH_LIMIT}" for name in sorted(LIMIT_SETTINGS)]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def keyproof(store: str, workers: int, parent: Path | None = None) -> Iterator[KeyproofServer]:
    """``keyproof serve`` on ``store`` with ``workers`` processes, its files (an SQLite
    database, keys, audit log) in a new directory under ``parent`` (the system's
    temporary directory by default); its state removed after."""
    directory = Path(tempfile.mkdtemp(prefix="keyproof-bench-", dir=parent))
    tag = uuid.uuid4().hex[:12]
    args = [
        "--workers",
        str(workers),
        "--store",
        store_url(store, directory, tag),
        "--config",
        str(_config(directory)),
    ]
    server = KeyproofServer(directory / "data", args=args, startup_timeout=60)
    try:
        with server:
            yield server
    finally:
        cleanup(store, tag)


def cleanup(store: str, tag: str) -> None:
    """Remove a Redis prefix or a PostgreSQL schema the benchmark created."""
    if store == "redis":
        import redis

        with suppress(redis.RedisError, ValueError):
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
            keys = list(client.scan_iter(match=f"keyproof-bench:{tag}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
    elif store == "postgres":
        import asyncio

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
            await conn.execute(f'DROP SCHEMA IF EXISTS "keyproof_bench_{tag}" CASCADE')
            await conn.close()

        with suppress(OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            asyncio.run(drop())


@contextmanager
def app(
    name: str,
    workers: int,
    env: dict[str, str] | None = None,
    module: str = "benchmarks.apps",
) -> Iterator[ServerProcess]:
    """``module``'s ASGI app ``name`` (by default one of ``benchmarks.apps``) under uvicorn
    (uvloop, httptools), its workers on sockets of their own as keyproof's
    (``benchmarks.workers``)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "benchmarks.workers",
        f"{module}:{name}",
        str(port),
        str(workers),
    ]
    env = {
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = Path(tempfile.mkdtemp(prefix="keyproof-bench-")) / f"{name}.log"
    with ServerProcess(command, url=f"http://127.0.0.1:{port}", log_path=log, env=env) as server:
        yield server


@contextmanager
def minimal_login(store: str, workers: int) -> Iterator[ServerProcess]:
    """``benchmarks.minimal_login`` on ``store`` (sqlite or redis); its state removed after."""
    directory = Path(tempfile.mkdtemp(prefix="keyproof-bench-"))
    tag = uuid.uuid4().hex[:12]
    env = {"KEYPROOF_BENCH_STORE": store_url(store, directory, tag)}
    try:
        with app("app", workers, env, module="benchmarks.minimal_login") as server:
            yield server
    finally:
        cleanup(store, tag)
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(server: ServerProcess) -> float:
    """User + system CPU time used so far by the server's processes (its process group:
    uvicorn's supervisor and workers), from ``/proc``; 0 where there is no ``/proc``."""
    if server.process is None:
        return 0.0
    group = os.getpgid(server.process.pid)
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # after the state: ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def store_reachable(store: str) -> str | None:
    """None when the store answers, else why it is skipped."""
    if store == "sqlite":
        return None
    try:
        if store == "redis":
            import redis

            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        else:
            import asyncio

            import asyncpg

            async def ping() -> None:
                conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
                await conn.close()

            asyncio.run(ping())
    except Exception as exc:
        return f"{store} unreachable: {type(exc).__name__}"
    return None


def token_for(server: KeyproofServer, scope: str) -> tuple[str, str]:
    """A real sign-in (did:key) on ``server``: the access token, and the issuer's key (x)."""
    from nacl.signing import SigningKey

    from keyproof.crypto.didkey import encode_did_key
    from keyproof.crypto.encoding import encode_base64url

    key = SigningKey.generate()
    account = encode_did_key("ed25519", bytes(key.verify_key))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        message = client.post("/v1/challenge", json={"account": account, "scope": scope})
        text = message.raise_for_status().json()["message"]
        signature = encode_base64url(key.sign(text.encode()).signature)
        answer = client.post("/v1/token", json={"message": text, "signature": signature})
        token = answer.raise_for_status().json()["access_token"]
        jwks = client.get("/.well-known/jwks.json").raise_for_status().json()
    return token, jwks["keys"][0]["x"]


def prime(url: str, token: str, requests: int = 20) -> None:
    """Authorised requests one at a time, each on a new connection, which must all succeed.

    Each worker then has fetched the issuer's JWKS before the route is measured: a
    guard's first fetch is not what the load test is about.
    """
    headers = {"authorization": f"Bearer {token}"}
    for _ in range(requests):
        httpx.get(url, headers=headers, timeout=10).raise_for_status()
