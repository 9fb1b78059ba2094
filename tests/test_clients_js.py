"""clients/js against a real keyproof: its node tests, other JS signers, message builders,
JOSE verifiers and OAuth/DPoP clients, and examples/web in Debian's Chromium on another
origin, keeping a DPoP session at a guarded resource server across token lifetimes.

Needs node, npm (``npm ci`` runs here from clients/js/package-lock.json) and chromium.
Without them these tests skip with the reason, unless ``KEYPROOF_REQUIRE_BROWSER=1``
(as in CI) makes them fail.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

from keyproof.testing import KeyproofServer, ServerProcess, free_port

from resource_server import INTROSPECTION_CLIENT

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "js"
RESOURCE_SERVER = Path(__file__).resolve().parent / "resource_server.py"
LOCK_STAMP = CLIENT / "node_modules" / ".keyproof-lock-sha256"
NODE_TIMEOUT = 300


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("KEYPROOF_REQUIRE_BROWSER") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """clients/js/node_modules, installed by ``npm ci`` when the lock file changed."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        unavailable("node and npm are needed for clients/js (Debian: apt-get install nodejs npm)")
    digest = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    if not LOCK_STAMP.exists() or LOCK_STAMP.read_text() != digest:
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            unavailable(f"npm ci failed in clients/js:\n{result.stderr[-2000:]}")
        LOCK_STAMP.write_text(digest)
    return CLIENT / "node_modules"


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        unavailable("Debian's chromium is needed for the browser test (apt-get install chromium)")
    return found


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class StaticSite:
    """The repository root over HTTP on 127.0.0.1: the page and the client's modules."""

    server: ThreadingHTTPServer

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[StaticSite, StaticSite]]:
    """Two origins serving the same page: one keyproof lists, one it does not."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT))
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield StaticSite(servers[0]), StaticSite(servers[1])
    for server in servers:
        server.shutdown()
        server.server_close()


def serve_keyproof(
    data: Path, page: StaticSite, settings: str = "", policy: str = ""
) -> KeyproofServer:
    """keyproof for the page's origin (CORS and a relying party), with extra settings."""
    from conftest import SERVER_LOGS

    config = data / "keyproof.toml"
    config.write_text(
        "[keyproof]\n"
        'chains = ["eip155:1", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "did:key"]\n'
        f'cors_origins = ["{page.origin}"]\n'
        f"{settings}"
        "[[keyproof.relying_parties]]\n"
        f'origin = "{page.origin}"\ndomain = "{page.host}"\nuri = "{page.origin}/examples/web/"\n'
        "[policy]\n"
        'scopes = ["profile:read", "escrow:release"]\n'
        'default = ["profile:read"]\n'
        f"{policy}"
        "[policy.namespaces]\n"
        '"did:key" = ["escrow:release"]\n'
    )
    server = KeyproofServer(data, args=["--config", str(config)])
    SERVER_LOGS.append(server.log_path)
    return server


@pytest.fixture(scope="module")
def keyproof(
    tmp_path_factory: pytest.TempPathFactory, sites: tuple[StaticSite, StaticSite]
) -> Iterator[KeyproofServer]:
    data = tmp_path_factory.mktemp("clients-js")
    with serve_keyproof(data, sites[0], "token_ttl = 60\n") as server:
        yield server


@dataclass
class SessionServers:
    """keyproof with 10 s tokens and DPoP nonces, and a resource server trusting it."""

    keyproof: KeyproofServer
    resource: ServerProcess

    @property
    def env(self) -> dict[str, str]:
        return {"SESSIONS_URL": self.keyproof.url, "RESOURCE_URL": self.resource.url}


@pytest.fixture(scope="module")
def session_servers(
    tmp_path_factory: pytest.TempPathFactory, sites: tuple[StaticSite, StaticSite]
) -> Iterator[SessionServers]:
    from conftest import SERVER_LOGS

    data = tmp_path_factory.mktemp("clients-js-sessions")
    secret = secrets.token_urlsafe(24)
    settings = (
        "token_ttl = 10\n"
        "dpop_nonce = true\n"
        "[keyproof.introspection_clients]\n"
        f'{INTROSPECTION_CLIENT} = "{hashlib.sha256(secret.encode()).hexdigest()}"\n'
    )
    policy = 'dpop_scopes = ["escrow:release"]\n'
    with serve_keyproof(data, sites[0], settings, policy) as keyproof:
        port = free_port()
        command = [sys.executable, str(RESOURCE_SERVER), "--issuer", keyproof.url]
        command += ["--port", str(port), "--cors-origin", sites[0].origin]
        resource = ServerProcess(
            command,
            url=f"http://127.0.0.1:{port}",
            log_path=data / "resource-server.log",
            env={"RESOURCE_CLIENT_SECRET": secret},
        )
        SERVER_LOGS.append(resource.log_path)
        with resource:
            yield SessionServers(keyproof, resource)


def node_test(path: str, env: dict[str, str]) -> str:
    """``node --test`` on ``path`` in clients/js; every test must run and pass."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", "--test-concurrency=1", path],
        cwd=CLIENT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    counts = dict(re.findall(r"^# (pass|fail|skipped|todo|cancelled) (\d+)$", output, re.M))
    assert int(counts.get("pass", "0")) > 0, output[-3000:]
    assert counts.get("fail") == counts.get("skipped") == counts.get("cancelled") == "0", output
    return output


def test_unit(node_modules: Path):
    node_test("test/unit/", {})


@pytest.mark.parametrize(
    "suite", sorted(p.name for p in (CLIENT / "test" / "interop").glob("*.test.js"))
)
def test_interop(
    node_modules: Path, keyproof: KeyproofServer, session_servers: SessionServers, suite: str
):
    node_test(f"test/interop/{suite}", {"KEYPROOF_URL": keyproof.url, **session_servers.env})


@pytest.mark.parametrize(
    "command",
    [["tsc", "-p", "test/types"], ["prettier", "--check", "src", "test", "../../examples/web"]],
    ids=["type_declarations_compile", "sources_are_formatted"],
)
def test_static_check(node_modules: Path, command: list[str]):
    result = subprocess.run(
        [str(node_modules / ".bin" / command[0]), *command[1:]],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sign_in_page_in_chromium(
    node_modules: Path,
    chromium: str,
    session_servers: SessionServers,
    sites: tuple[StaticSite, StaticSite],
    tmp_path: Path,
):
    """Screenshots stay in the test's tmp dir (pytest keeps the last runs)."""
    env = {
        "KEYPROOF_URL": session_servers.keyproof.url,
        "RESOURCE_URL": session_servers.resource.url,
        "PAGE_URL": sites[0].origin,
        "FOREIGN_PAGE_URL": sites[1].origin,
        "CHROMIUM": chromium,
        "USER_DATA_DIR": str(tmp_path / "chromium-profile"),
        "ARTIFACTS": str(tmp_path),
    }
    node_test("test/browser/", env)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "README-snippet.png",
        "Sign-in-with-Ethereum-the-page-shows-the-account-and-scopes.png",
        "Sign-in-with-Solana-through-solana-signMessage.png",
        "Sign-in-with-Solana-through-the-wallet-s-solana-signIn.png",
        "unlisted-origin.png",
    ]
