"""Response headers, request ids and the private metrics port.

``X-Content-Type-Options: nosniff`` on every response and ``Cache-Control: no-store`` on
every response that carries or takes a token, in process; what a client's
``X-Request-ID`` becomes in the log and the audit log, and ``/metrics`` on its own
port, against a real server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from keyproof.server.app import ROUTES, create_app
from keyproof.server.audit import AUDIT_FILE_NAME
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore
from keyproof.testing import KeyproofServer, free_port

from conftest import FrozenClock
from wallets import EthWallet

CLIENT, SECRET = "escrow-rs", "introspection-secret-for-tests"


@pytest.fixture
def client(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    configured = dataclasses.replace(settings, introspection_clients={CLIENT: digest})
    app = create_app(configured, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def sign_in(client: TestClient) -> tuple[httpx.Response, httpx.Response]:
    wallet = EthWallet.create()
    issued = client.post("/v1/challenge", json={"account": wallet.caip10()})
    message = issued.json()["message"]
    token = client.post("/v1/token", json={"message": message, "signature": wallet.sign(message)})
    return issued, token


def test_every_response_carries_nosniff(client: TestClient):
    responses = [client.request(method, path) for path, _, method in ROUTES]
    responses += [client.get("/no/such/path"), client.delete("/v1/token")]
    responses += list(sign_in(client))
    assert {r.headers.get("x-content-type-options") for r in responses} == {"nosniff"}
    assert {r.status_code for r in responses} >= {200, 201, 401, 404, 405, 415}


def test_every_response_that_carries_or_takes_a_token_is_not_stored(client: TestClient):
    issued, token = sign_in(client)
    access = token.json()["access_token"]
    basic = (CLIENT, SECRET)
    bearer = {"Authorization": f"Bearer {access}"}
    responses = {
        "challenge": issued,
        "token": token,
        "token refused": client.post("/v1/token", json={"message": "x", "signature": "y"}),
        "introspect": client.post("/v1/introspect", data={"token": access}, auth=basic),
        "introspect refused": client.post("/v1/introspect", data={"token": access}),
        "action refused": client.post("/v1/actions/verify", json={}, headers=bearer),
        "revoke": client.post("/v1/revoke", data={"token": access}),
    }
    stored = {name: r.headers.get("cache-control") for name, r in responses.items()}
    assert stored == dict.fromkeys(responses, "no-store")
    assert responses["introspect"].json()["active"] is True


# --- request ids, in the log and the audit log of a real server ---------------------------

UNSAFE_IDS = {
    "too_long": b"x" * 65,
    "space": b"trace 42",
    "quote_and_braces": b'"},{"account":"forged',
    "non_ascii": "café-42".encode(),
    "tab": b"abc\tdef",
}
SAFE_ID = "trace-42.a:b_c"


def redeem_with_id(url: str, request_id: bytes) -> httpx.Response:
    wallet = EthWallet.create()
    message = httpx.post(f"{url}/v1/challenge", json={"account": wallet.caip10()}).json()["message"]
    body = {"message": message, "signature": wallet.sign(message)}
    return httpx.post(f"{url}/v1/token", json=body, headers={"X-Request-ID": request_id})


def test_request_ids_reach_log_and_audit_only_in_a_safe_shape(
    tmp_path: Path, server_log: list[Path]
):
    with KeyproofServer(tmp_path / "data") as server:
        audit = server.data_dir / AUDIT_FILE_NAME
        server_log.extend([server.log_path, audit])
        replaced = {}
        for name, unsafe in UNSAFE_IDS.items():
            response = redeem_with_id(server.url, unsafe)
            assert response.status_code == 200, name
            replaced[name] = response.headers["x-request-id"]
        kept = redeem_with_id(server.url, SAFE_ID.encode()).headers["x-request-id"]
    # Read once the server has stopped: an access line is written after its response.
    log_text = server.log()
    assert kept == SAFE_ID
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in replaced.values()), replaced
    access = [json.loads(line) for line in log_text.splitlines() if '"keyproof.access"' in line]
    audited = [json.loads(line)["request_id"] for line in audit.read_text().splitlines()]
    assert audited == [*replaced.values(), SAFE_ID]
    assert {SAFE_ID, *replaced.values()} <= {entry["request_id"] for entry in access}
    for unsafe in UNSAFE_IDS.values():
        text = unsafe.decode("latin-1")
        assert text not in log_text
        assert text not in audit.read_text(encoding="latin-1")


# --- /metrics on a private port -----------------------------------------------------------


def test_metrics_port_serves_metrics_there_and_not_on_the_public_port(
    tmp_path: Path, server_log: list[Path]
):
    metrics_port = free_port()
    with KeyproofServer(tmp_path / "data", args=["--metrics-port", str(metrics_port)]) as server:
        server_log.append(server.log_path)
        public = httpx.get(f"{server.url}/metrics")
        private = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert (public.status_code, public.json()["reason"]) == (404, "not_found")
    assert private.status_code == 200
    counted = {
        (s.labels.get("endpoint"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(private.text)
        for s in family.samples
        if s.name == "keyproof_http_requests_total"
    }
    assert counted[("/healthz", "200")] >= 1
    assert counted[("/metrics", "404")] == 1, "refused on the public port, and counted"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"metrics_port": 8000, "port": 8000}, "metrics_port must differ from port"),
        ({"metrics_port": 9100, "workers": 2}, "use it with workers = 1"),
        ({"metrics_port": 70000}, "metrics_port must be 0 (off) or 1..65535"),
        ({"header_timeout": 0}, "header_timeout must be 1..300 seconds"),
        ({"max_header_bytes": 1023}, "max_header_bytes must be 1 KiB..1 MiB"),
        ({"max_header_bytes": (1 << 20) + 1}, "max_header_bytes must be 1 KiB..1 MiB"),
        ({"body_timeout": 301}, "body_timeout must be 1..300 seconds"),
        ({"max_connections": 0}, "max_connections must be 1..100000"),
    ],
)
def test_operation_settings_are_validated(values: dict[str, int], says: str):
    from keyproof.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=re.escape(says)):
        Settings.load({"store": "sqlite:///x.db", **values}, {})
