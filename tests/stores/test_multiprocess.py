"""Atomicity across OS processes sharing one SQLite file, Redis or PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keyproof.stores import open_store
from keyproof.stores.base import Kind, Store

from .harness import WORKER, worker_env

KEYS = 20
PER_KEY = 25
PROCESSES = 2


@contextmanager
def workers(*args: str, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``count`` worker processes; kill any still running on the way out."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=worker_env(),
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def race(url: str, op: str) -> list[int]:
    """For each key in turn, release every worker at once; count the winners per key."""
    totals: list[int] = []
    with workers("race", url, op, str(KEYS), str(PER_KEY), count=PROCESSES) as procs:
        for _ in range(KEYS):
            for proc in procs:
                assert proc.stdout is not None
                assert proc.stdout.readline() == "ready\n"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            totals.append(sum(int(proc.stdout.readline()) for proc in procs if proc.stdout))
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    return totals


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if request.param == "postgres":
        schema: str = request.getfixturevalue("postgres_schema")
        return f"{request.getfixturevalue('postgres_url')}?schema={schema}"
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


@pytest.fixture
async def parent_store(shared_url: str) -> AsyncIterator[Store]:
    store = open_store(shared_url)
    yield store
    await store.close()


async def test_one_take_wins_across_processes(shared_url: str, parent_store: Store) -> None:
    for i in range(KEYS):
        assert await parent_store.add(Kind.CHALLENGE, f"k{i}", b"v", 60)
    assert race(shared_url, "take") == [1] * KEYS
    assert await parent_store.count(Kind.CHALLENGE) == 0


async def test_one_add_wins_across_processes(shared_url: str, parent_store: Store) -> None:
    assert race(shared_url, "add") == [1] * KEYS
    assert await parent_store.count(Kind.CHALLENGE) == KEYS
