"""Runs store operations in a separate OS process for the multi-process tests.

    store_worker.py race URL OP KEYS PER_KEY   OP (add or take) on CHALLENGE keys k0, k1, ...
    store_worker.py crash PATH LIMIT           add k_i, take every third, until killed

``race`` handles the keys one at a time: it prints ``ready``, waits for a line on stdin
(so that every worker starts on the key together), fires PER_KEY concurrent calls at
it and prints how many of them won. ``crash`` prints ``added i`` / ``taken i`` after
each committed write.
"""

from __future__ import annotations

import asyncio
import os
import sys

from keyproof.stores import open_store
from keyproof.stores.base import Kind, Store
from keyproof.stores.sqlite import SqliteStore

CRASH_TTL = 3600.0


async def race(url: str, op: str, keys: int, per_key: int) -> None:
    store = open_store(url)
    try:
        await asyncio.gather(*(store.ping() for _ in range(per_key)))  # fill the pool
        for i in range(keys):
            print("ready", flush=True)
            sys.stdin.readline()
            print(await race_key(store, op, f"k{i}", per_key), flush=True)
    finally:
        await store.close()


async def race_key(store: Store, op: str, key: str, per_key: int) -> int:
    mine = str(os.getpid()).encode()
    if op == "add":
        added = await asyncio.gather(
            *(store.add(Kind.CHALLENGE, key, mine, 60) for _ in range(per_key))
        )
        return added.count(True)
    taken = await asyncio.gather(*(store.take(Kind.CHALLENGE, key) for _ in range(per_key)))
    return sum(value is not None for value in taken)


async def crash(path: str, limit: int) -> None:
    store = SqliteStore(path)
    for i in range(limit):
        if not await store.add(Kind.CHALLENGE, f"k{i}", f"v{i}".encode(), CRASH_TTL):
            raise SystemExit(f"k{i} already present")
        print(f"added {i}", flush=True)
        if i % 3 == 0:
            if await store.take(Kind.CHALLENGE, f"k{i}") != f"v{i}".encode():
                raise SystemExit(f"k{i} could not be taken")
            print(f"taken {i}", flush=True)
    await store.close()


def main(argv: list[str]) -> None:
    if argv[0] == "race":
        asyncio.run(race(argv[1], argv[2], int(argv[3]), int(argv[4])))
    elif argv[0] == "crash":
        asyncio.run(crash(argv[1], int(argv[2])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
