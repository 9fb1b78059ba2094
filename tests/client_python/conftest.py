"""A real keyproof issuer and a real resource server for the Python client's tests.

The resource server (``resource_app.py``) guards ``/me`` with ``keyproof.guard`` and
asks the issuer's introspection endpoint about every token, so a revoked token (or a
token of a revoked session) gets 401 at once. ``Traffic`` records every request a
client sends, the sign-in and refresh steps of its auth flow included, through httpx's
own event hooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from keyproof_client import KeyproofAuth, generate_key

from keyproof.testing import FrozenClock, KeyproofServer, ServerProcess, free_port

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
TOKEN_PATH = "/v1/token"
SCOPE = "profile:read"
DPOP_ONLY = "escrow:release"
"""Issued in DPoP-bound tokens only (``[policy] dpop_scopes``)."""
GRANTED = (SCOPE, DPOP_ONLY)


@dataclass(frozen=True)
class Services:
    issuer: str
    resource: str
    data_dir: Path

    @property
    def me(self) -> str:
        return f"{self.resource}/me"


@contextlib.contextmanager
def running_services(
    data: Path, *, token_ttl: int = 600, dpop_nonce: bool = False
) -> Iterator[Services]:
    """keyproof (``token_ttl``, ``dpop_nonce``; everyone is granted ``GRANTED``) and the
    resource server, on 127.0.0.1."""
    from conftest import SERVER_LOGS

    secret = secrets.token_urlsafe(24)
    config = data / "keyproof.toml"
    config.write_text(
        "[keyproof]\n"
        f"token_ttl = {token_ttl}\n"
        f"dpop_nonce = {str(dpop_nonce).lower()}\n"
        "challenge_limit_per_ip = 100000\n"
        "[keyproof.introspection_clients]\n"
        f'rs = "{hashlib.sha256(secret.encode()).hexdigest()}"\n'
        "[policy]\n"
        f"scopes = {list(GRANTED)}\n"
        f"default = {list(GRANTED)}\n"
        f'dpop_scopes = ["{DPOP_ONLY}"]\n'
    )
    with KeyproofServer(data / "kp", args=["--config", str(config)]) as issuer:
        SERVER_LOGS.append(issuer.log_path)
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", "resource_app:create_app"]
        command += ["--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)]
        resource = ServerProcess(
            [*command, "--log-level", "warning"],
            url=f"http://127.0.0.1:{port}",
            log_path=data / "resource.log",
            env={"RS_ISSUER": issuer.url, "RS_CLIENT_SECRET": secret},
        )
        SERVER_LOGS.append(resource.log_path)
        with resource:
            yield Services(issuer.url, resource.url, data)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("client")) as running:
        yield running


def step(request: httpx.Request) -> str:
    """The request's path, or ``refresh`` for a refresh grant at the token endpoint."""
    if request.url.path == TOKEN_PATH and b"grant_type=refresh_token" in request.content:
        return "refresh"
    return request.url.path


@dataclass
class Traffic:
    """``(method, step, status)`` of every response a client received, in order."""

    seen: list[tuple[str, str, int]] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        self.seen.append((response.request.method, step(response.request), response.status_code))
        self.responses.append(response)

    async def arecord(self, response: httpx.Response) -> None:
        self.record(response)

    def hooks(self) -> dict[str, list[object]]:
        return {"response": [self.record]}

    def async_hooks(self) -> dict[str, list[object]]:
        return {"response": [self.arecord]}

    @property
    def sign_ins(self) -> int:
        return sum(1 for _, path, status in self.seen if path == TOKEN_PATH and status == 200)

    @property
    def refreshes(self) -> int:
        return sum(1 for _, path, status in self.seen if path == "refresh" and status == 200)

    def paths(self) -> list[str]:
        return [f"{path} {status}" for _, path, status in self.seen]


def revoke(services: Services, token: str) -> None:
    """``POST /v1/revoke`` (RFC 7009): the holder revokes its own token."""
    answer = httpx.post(f"{services.issuer}/v1/revoke", data={"token": token})
    assert answer.status_code == 200, answer.text


def sync_client(auth: KeyproofAuth, traffic: Traffic) -> httpx.Client:
    return httpx.Client(auth=auth, event_hooks=traffic.hooks(), timeout=10)


def async_client(auth: KeyproofAuth, traffic: Traffic) -> httpx.AsyncClient:
    return httpx.AsyncClient(auth=auth, event_hooks=traffic.async_hooks(), timeout=10)


def frozen_auth(
    services: Services, key_type: str = "ed25519", **options: Any
) -> tuple[KeyproofAuth, FrozenClock]:
    """An auth for ``SCOPE`` whose renewal clock moves only when the test moves it."""
    clock = FrozenClock(time.time())
    key = generate_key(key_type)
    return KeyproofAuth(services.issuer, key, scope=SCOPE, clock=clock, **options), clock


def in_threads(count: int, call: Callable[[], T]) -> list[T]:
    """``call`` in ``count`` threads released together (bounded waits); the results."""
    start, results = threading.Barrier(count), []

    def run() -> None:
        start.wait(timeout=10)
        results.append(call())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results
