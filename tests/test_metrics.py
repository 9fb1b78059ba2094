"""/metrics, /readyz and request ids over HTTP, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import EthWallet


@pytest.fixture
def store(clock: FrozenClock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def client(
    settings: Settings, keyset: KeySet, clock: FrozenClock, store: MemoryStore
) -> Iterator[TestClient]:
    app = create_app(settings, store=store, keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_refusals_and_latency_are_counted(client: TestClient):
    wallet = EthWallet.create()
    for _ in range(2):
        issued = client.post("/v1/challenge", json={"account": wallet.caip10()})
        assert issued.status_code == 201
    message = issued.json()["message"]
    bad = client.post("/v1/token", json={"message": message, "signature": "0x" + "11" * 65})
    assert bad.status_code in {400, 401}
    refused_code = bad.json()["reason"]
    found = samples(client)
    assert (
        value(
            found,
            "keyproof_http_requests_total",
            endpoint="/v1/challenge",
            method="POST",
            status="201",
        )
        == 2
    )
    assert value(found, "keyproof_refusals_total", endpoint="/v1/token", code=refused_code) == 1
    assert value(found, "keyproof_http_request_duration_seconds_count", endpoint="/v1/token") == 1


def test_unknown_paths_share_one_label(client: TestClient):
    for i in range(20):
        assert client.get(f"/scan/{i}").status_code == 404
    found = samples(client)
    endpoints = {dict(labels).get("endpoint") for _, labels in found}
    assert not any(str(e).startswith("/scan") for e in endpoints)
    assert value(found, "keyproof_refusals_total", endpoint="other", code="not_found") == 20


def test_each_app_has_its_own_registry(
    settings: Settings, keyset: KeySet, clock: FrozenClock, client: TestClient
):
    client.get("/healthz")
    other = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(other, base_url="http://127.0.0.1:8000") as second:
        found = samples(second)
    assert (
        value(
            found, "keyproof_http_requests_total", endpoint="/healthz", method="GET", status="200"
        )
        == 0
    )


def test_readyz_fails_closed_when_the_store_is_down(client: TestClient, store: MemoryStore):
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    asyncio.run(store.close())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["reason"] == "store_unavailable"
    assert client.get("/healthz").status_code == 200
    challenge = client.post("/v1/challenge", json={"account": EthWallet.create().caip10()})
    assert challenge.status_code == 503
    assert "retry-after" in challenge.headers


def test_request_id_is_set_and_echoed_only_when_safe(client: TestClient):
    fresh = client.get("/healthz").headers["x-request-id"]
    assert len(fresh) == 32
    assert client.get("/healthz").headers["x-request-id"] != fresh
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-42.a:b"})
    assert echoed.headers["x-request-id"] == "trace-42.a:b"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert unsafe.headers["x-request-id"] != "x" * 65
    assert len(unsafe.headers.get_list("x-request-id")) == 1
