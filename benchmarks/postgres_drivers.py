"""psycopg 3 (async, psycopg_pool) against asyncpg, for the PostgreSQL store; prints JSON.

    pip install 'psycopg[binary]' psycopg-pool   # the contender; asyncpg is keyproof[postgres]
    python -m benchmarks.postgres_drivers [--url postgresql://127.0.0.1/test] [--logins N]

Both drivers run the same statements through a pool of the same size: the nine store
operations of one login (four counter upserts and the insert of the challenge; then the
failure-counter read, the challenge read, the tombstone insert and the consuming
``DELETE … RETURNING``), one after another per login, with 1 and 16 logins in flight.
Reported: logins per second and the 50th/99th percentile of one login, best of the
rounds, drivers interleaved. Tables live in a fresh schema dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool

POOL_SIZE = 10
Run = Callable[[str, tuple[Any, ...]], Awaitable[Any]]

SCHEMA = """
CREATE TABLE {s}.entries (kind text NOT NULL, key text NOT NULL, value bytea, count bigint,
  expires_at timestamptz NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX ON {s}.entries (expires_at);
"""
HIT = """INSERT INTO {s}.entries AS e (kind, key, count, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3)) ON CONFLICT (kind, key) DO UPDATE SET
count = CASE WHEN e.expires_at <= now() THEN 1 ELSE e.count + 1 END,
expires_at = CASE WHEN e.expires_at <= now() THEN excluded.expires_at ELSE e.expires_at END
RETURNING count"""
ADD = """INSERT INTO {s}.entries AS e (kind, key, value, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT (kind, key) DO UPDATE SET
value = excluded.value, count = NULL, expires_at = excluded.expires_at
WHERE e.expires_at <= now() RETURNING true"""
GET = "SELECT value FROM {s}.entries WHERE kind = $1 AND key = $2 AND expires_at > now()"
TAKE = "DELETE FROM {s}.entries WHERE kind = $1 AND key = $2 AND expires_at > now() RETURNING value"


async def login(run: Run, s: str, ip: str, account: str) -> None:
    nonce = secrets.token_hex(16)
    for key in (f"ch:ip:{ip}", f"ch:acct:{account}", f"out:acct:{account}", "out:all"):
        await run(HIT.format(s=s), ("counter", key, 60.0))
    await run(ADD.format(s=s), ("challenge", nonce, b"binding" * 40, 300.0))
    await run(GET.format(s=s), ("counter", f"fail:ip:{ip}"))
    await run(GET.format(s=s), ("challenge", nonce))
    await run(ADD.format(s=s), ("used_nonce", nonce, b"1", 300.0))
    if await run(TAKE.format(s=s), ("challenge", nonce)) is None:
        raise RuntimeError("the challenge was not consumed")


async def measure(run: Run, s: str, logins: int, in_flight: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(logins))

    async def client(n: int) -> None:
        for i in queue:
            start = time.perf_counter()
            await login(run, s, f"ip{n}", f"acct{i % 50}")
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(in_flight)))
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "logins_per_second": round(logins / elapsed),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


async def asyncpg_runner(url: str) -> tuple[Run, Callable[[], Awaitable[None]]]:
    # By default asyncpg runs a reset query (a round trip) each time a connection goes
    # back to the pool; these statements leave no session state, so skip it.
    pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, reset=_no_reset)

    async def run(sql: str, args: tuple[Any, ...]) -> Any:
        return await pool.fetchval(sql, *args)

    return run, pool.close


async def _no_reset(connection: asyncpg.Connection) -> None:
    pass


async def psycopg_runner(url: str) -> tuple[Run, Callable[[], Awaitable[None]]]:
    pool = AsyncConnectionPool(
        url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        open=False,
    )
    await pool.open(wait=True)
    placeholders = re.compile(r"\$\d+")

    async def run(sql: str, args: tuple[Any, ...]) -> Any:
        async with pool.connection() as conn:
            cursor = await conn.execute(placeholders.sub("%s", sql), args)
            row = await cursor.fetchone()
            return None if row is None else row[0]

    return run, pool.close


async def main_async(url: str, logins: int, rounds: int) -> dict[str, Any]:
    schema = f"keyproof_bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(SCHEMA.format(s=schema))
        try:
            runners = {"asyncpg": asyncpg_runner, "psycopg": psycopg_runner}
            best: dict[str, dict[str, float]] = {}
            for in_flight in (1, 16):
                for _ in range(rounds):
                    for name, make in runners.items():  # interleaved
                        run, close = await make(url)
                        await login(run, schema, "warm", "warm")
                        result = await measure(run, schema, logins, in_flight)
                        await close()
                        case = f"{name}_{in_flight}_in_flight"
                        kept = best.get(case)
                        if kept is None or result["logins_per_second"] > kept["logins_per_second"]:
                            best[case] = result
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"pool_size": POOL_SIZE, "logins": logins, "rounds": rounds, "results": best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # The server runs on uvloop; so does this measurement.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report = runner.run(main_async(args.url, args.logins, args.rounds))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
