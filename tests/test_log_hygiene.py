"""No token, signature or key ever reaches a log line, the audit log or a server log.

tests/conftest.py scans every captured record and registered server log at the end
of the session; these tests drive the flows that handle secrets and scan at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from keyproof.app import create_app
from keyproof.config import Settings
from keyproof.keys import KeySet
from keyproof.logs import JsonFormatter
from keyproof.stores.memory import MemoryStore
from keyproof.testing import KeyproofServer

from conftest import FrozenClock, secrets_in
from wallets import EthWallet


def _flow(client: httpx.Client | TestClient) -> list[str]:
    """Logins that succeed and fail, a revocation, a token in a URL; returns the secrets."""
    wallet = EthWallet.create()
    issued = client.post("/v1/challenge", json={"account": wallet.caip10()}).json()
    message = issued["message"]
    forged = EthWallet.create().sign(message)
    assert client.post("/v1/token", json={"message": message, "signature": forged}).status_code
    signature = wallet.sign(message)
    token = client.post("/v1/token", json={"message": message, "signature": signature}).json()[
        "access_token"
    ]
    client.post("/v1/token", json={"message": message, "signature": signature})
    client.get(f"/healthz?access_token={token}")
    client.get(f"/nowhere/{token}")
    client.post("/v1/revoke", json={"token": token})
    return [token, signature, forged]


def _assert_clean(text: str, secrets: list[str]) -> None:
    assert text
    assert not secrets_in(text)
    for secret in secrets:
        assert secret not in text
        assert secret[-40:] not in text


def test_in_process_logs_and_audit_hold_no_secrets(
    settings: Settings, keyset: KeySet, clock: FrozenClock, caplog: pytest.LogCaptureFixture
):
    # Only keyproof's loggers: the test's own HTTP client logs the URLs it requests.
    caplog.set_level(logging.DEBUG, logger="keyproof")
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        secrets = _flow(client)
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"keyproof.access"' in line]
    assert {entry["path"] for entry in access} >= {"/v1/token", "/healthz"}
    assert all(entry["request_id"] for entry in access)
    _assert_clean("\n".join(lines), secrets)
    _assert_clean((settings.data_dir / "audit.jsonl").read_text(), secrets)


@pytest.mark.slow
def test_server_log_and_audit_hold_no_secrets(tmp_path: Path, server_log):
    data = tmp_path / "data"
    with KeyproofServer(data, args=["--config", str(_debug_config(tmp_path))]) as server:
        server_log.extend([server.log_path, data / "audit.jsonl"])
        with httpx.Client(base_url=server.url, timeout=10) as client:
            secrets = _flow(client)
    log = server.log()
    assert '"logger":"keyproof.access"' in log
    _assert_clean(log, secrets)
    _assert_clean((data / "audit.jsonl").read_text(), secrets)


def _debug_config(tmp_path: Path) -> Path:
    path = tmp_path / "keyproof.toml"
    path.write_text('[keyproof]\nlog_level = "debug"\n')
    return path
