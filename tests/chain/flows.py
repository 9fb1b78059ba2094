"""keyproof over HTTP (in process) with contract wallets: apps, sign-ins, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore
from keyproof.testing import FrozenClock

from .anvil import Anvil
from conftest import TEST_POLICY


def chain_settings(data_dir: Path, rpc_urls: dict[str, str], **overrides: Any) -> Settings:
    """Settings for eip155:31337 with an RPC; failure limits out of the way unless set."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "store": "memory://",
        "chains": ("eip155:31337", "eip155:1"),
        "rpc_urls": rpc_urls,
        "policy": TEST_POLICY,
        "failed_token_limit_per_ip": 10_000,
        "failed_token_limit_per_account": 10_000,
        "challenge_limit_per_ip": 10_000,
    }
    return Settings(**{**values, **overrides})


@contextmanager
def app_client(
    settings: Settings, keyset: KeySet, clock: FrozenClock, store: MemoryStore | None = None
) -> Iterator[TestClient]:
    store = store or MemoryStore(clock=clock)
    app = create_app(settings, store=store, keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def challenge(client: TestClient, account: str, scope: str = "") -> str:
    response = client.post("/v1/challenge", json={"account": account, "scope": scope})
    assert response.status_code == 201, response.text
    return str(response.json()["message"])


def redeem(client: TestClient, message: str, signature: str) -> tuple[int, str]:
    """``(status, reason)``; the reason of a success is ``"ok"``."""
    response = client.post("/v1/token", json={"message": message, "signature": signature})
    if response.status_code == 200:
        return 200, "ok"
    return response.status_code, str(response.json()["reason"])


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (and maybe others)."""
    text = client.get("/metrics").text
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def rpc_calls(client: TestClient, chain: str = "eip155:31337") -> float:
    return metric(client, "keyproof_rpc_calls_total", chain=chain)


def rpc_failures(client: TestClient, chain: str = "eip155:31337", **reason: str) -> float:
    return metric(client, "keyproof_rpc_failures_total", chain=chain, **reason)


@contextmanager
def nothing_mined(anvil: Anvil) -> Iterator[None]:
    """Whatever keyproof does inside, the chain gains no block (no transaction sent)."""
    before = anvil.block_number()
    yield
    assert anvil.block_number() == before, "keyproof made the node mine a block"
