"""PostgreSQL for the tests: reachability, per-test schemas, and a private server to crash.

:class:`OwnPostgres` runs Debian's PostgreSQL binaries (``initdb``, ``postgres``) in a
temporary directory, on 127.0.0.1 and a free port, so that a test may crash and
restart it without touching the machine's server. ``initdb`` and ``postgres`` refuse to
run as root: when the tests run as root (as CI does) both run as the ``postgres``
system user through ``runuser``, and the directory belongs to that user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from keyproof.testing import free_port

_T = TypeVar("_T")
REQUIRE = "KEYPROOF_REQUIRE_POSTGRES"
STARTUP_SECONDS = 30.0


def require_or_skip(reason: str) -> None:
    """Skip with ``reason``; fail instead where PostgreSQL is required (CI)."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on a loop of its own, whatever loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _select_one(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=2)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def postgres_unreachable(url: str) -> str | None:
    """None if the server at ``url`` answers, else the name of the failure."""
    try:
        run_async(_select_one(url))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return type(exc).__name__
    return None


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def drop_schema(url: str, schema: str) -> None:
    run_async(_execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def server_bindir() -> Path | None:
    """Where ``initdb`` lives: on PATH, or Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parts[-3])],
    )
    return found[-1].parent if found else None


class OwnPostgres:
    """A private PostgreSQL server; ``crash`` and ``start`` it at will, by its pid."""

    def __init__(self, root: Path, bindir: Path, as_user: list[str]) -> None:
        self.root = root
        self.data = root / "data"
        self.bindir = bindir
        self.as_user = as_user
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> OwnPostgres:
        """initdb in a fresh temporary directory (skips if the binaries are missing)."""
        bindir = server_bindir()
        if bindir is None:
            require_or_skip("PostgreSQL server binaries (initdb) are not installed")
        assert bindir is not None
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="keyproof-pg-"))
        if os.geteuid() == 0:
            as_user = _runuser_postgres(root)
        server = cls(root, bindir, as_user)
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        return server

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def start(self) -> None:
        command = [
            *self.as_user, str(self.bindir / "postgres"), "-D", str(self.data),
            "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=40",
            "-c", "shared_buffers=16MB",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while postgres_unreachable(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"own PostgreSQL did not start:\n{self.log()}")
            time.sleep(0.05)

    def pid(self) -> int:
        """The postmaster's pid, from the file it writes (not runuser's)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint, crash recovery on the next start."""
        self._signal(signal.SIGQUIT)

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.crash()  # its data is thrown away: no checkpoint needed
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, signum: int) -> None:
        assert self.process is not None and self.process.poll() is None
        os.kill(self.pid(), signum)
        self.process.wait(timeout=30)

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / program), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )


def _runuser_postgres(root: Path) -> list[str]:
    """Hand ``root`` to the postgres system user; the prefix that runs commands as it."""
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        require_or_skip("running as root and there is no postgres user to run initdb as")
        raise
    runuser = shutil.which("runuser")
    if runuser is None:
        require_or_skip("running as root and runuser is missing to run initdb as postgres")
    os.chown(root, user.pw_uid, user.pw_gid)
    return [str(runuser), "-u", "postgres", "--"]


def with_schema(url: str, schema: str) -> str:
    """``url`` naming the store schema ``schema``."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"
