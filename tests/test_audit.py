"""The audit log: every login and action decision, as JSON lines, with nothing secret."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from starlette.testclient import TestClient

from keyproof.actions import Action
from keyproof.errors import SignatureInvalid
from keyproof.server.app import create_app
from keyproof.server.audit import AuditLog
from keyproof.server.components import build_components
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from conftest import START, FrozenClock, secrets_in
from wallets import EthWallet


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def client(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("192.0.2.10", 5555)) as c:
        yield c


def test_login_success_and_refusal_are_audited_without_secrets(
    client: TestClient, settings: Settings
):
    wallet = EthWallet.create()
    issued = client.post("/v1/challenge", json={"account": wallet.caip10()}).json()
    message = issued["message"]
    forged = EthWallet.create().sign(message)
    refused = client.post("/v1/token", json={"message": message, "signature": forged})
    assert refused.status_code == 401
    signature = wallet.sign(message)
    ok = client.post("/v1/token", json={"message": message, "signature": signature})
    token = ok.json()["access_token"]

    path = settings.data_dir / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first, second = entries(path)
    assert first["event"] == second["event"] == "login"
    assert (first["outcome"], first["code"]) == ("refused", "signature_invalid")
    assert (second["outcome"], second["code"]) == ("success", None)
    assert first["account"] == second["account"] == wallet.caip10()
    assert first["client_ip"] == "192.0.2.10"
    assert second["nonce_sha256"] == sha256(issued["nonce"])
    assert second["request_id"] == ok.headers["x-request-id"]

    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert second["jti_sha256"] == sha256(jti)
    text = path.read_text()
    for secret in (token, signature, forged, issued["nonce"], jti, message.splitlines()[0]):
        assert secret not in text
    assert not secrets_in(text)


async def test_configured_path_and_every_decision_recorded(
    settings: Settings, keyset: KeySet, clock: FrozenClock, tmp_path: Path
):
    target = tmp_path / "logs" / "keyproof-audit.jsonl"
    configured = dataclasses.replace(settings, audit_log=target)
    components = build_components(
        configured, store=MemoryStore(clock=clock), keys=keyset, clock=clock
    )
    service = components.service
    wallet = EthWallet.create()
    issued = await service.challenge(wallet.caip10())
    for _ in range(3):
        with pytest.raises(SignatureInvalid):
            await service.redeem(issued.message, EthWallet.create().sign(issued.message))
    await service.redeem(issued.message, wallet.sign(issued.message))
    components.audit.close()
    outcomes = [(e["outcome"], e["code"]) for e in entries(target)]
    assert outcomes == [("refused", "signature_invalid")] * 3 + [("success", None)]
    assert all(e["client_ip"] is None and e["request_id"] is None for e in entries(target))
    assert not (settings.data_dir / "audit.jsonl").exists()


def test_existing_file_is_made_private(tmp_path: Path, clock: FrozenClock):
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o644)
    log = AuditLog(path, clock)
    log.record("login", "refused", code="nonce_unknown", account=None, client_ip="192.0.2.1")
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (entry,) = entries(path)
    assert entry["time"] == "2027-01-15T08:00:00.000+00:00"


def test_unwritable_audit_path_does_not_break_the_decision(
    settings: Settings, keyset: KeySet, clock: FrozenClock, tmp_path: Path
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    configured = dataclasses.replace(settings, audit_log=blocker / "audit.jsonl")
    app = create_app(configured, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        wallet = EthWallet.create()
        message = client.post("/v1/challenge", json={"account": wallet.caip10()}).json()["message"]
        body = {"message": message, "signature": wallet.sign(message)}
        assert client.post("/v1/token", json=body).status_code == 200


def test_action_decisions_are_audited(client: TestClient, settings: Settings):
    response = client.post(
        "/v1/actions/verify",
        json={"action": {}, "signature": "0x00", "expect": {}},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code in {400, 401}
    (entry,) = entries(settings.data_dir / "audit.jsonl")
    assert (entry["event"], entry["outcome"]) == ("action", "refused")
    assert entry["code"] == response.json()["reason"]
    assert entry["client_ip"] == "192.0.2.10"


def _escrow_release(wallet: EthWallet) -> tuple[dict[str, object], str]:
    doc: dict[str, object] = {
        "service": "Acme Escrow",
        "audience": "http://127.0.0.1:8000",
        "chain": "eip155:1",
        "type": "escrow.release",
        "object": "escrow-42",
        "id": "5" * 32,
        "deadline": START + 300,
    }
    return doc, wallet.sign_typed_data(Action.parse(doc).typed_data())


def test_action_lines_carry_account_and_token_id_digest(client: TestClient, settings: Settings):
    wallet = EthWallet.create()
    issued = client.post(
        "/v1/challenge", json={"account": wallet.caip10(), "scope": "escrow:release"}
    ).json()
    body = {"message": issued["message"], "signature": wallet.sign(issued["message"])}
    token = client.post("/v1/token", json=body).json()["access_token"]
    doc, signature = _escrow_release(wallet)
    request = {
        "action": doc,
        "signature": signature,
        "expect": {
            "service": "Acme Escrow",
            "audience": "http://127.0.0.1:8000",
            "type": "escrow.release",
            "object": "escrow-42",
            "scope": "escrow:release",
        },
    }
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/actions/verify", json=request, headers=headers).status_code == 200
    replay = client.post("/v1/actions/verify", json=request, headers=headers)
    assert replay.json()["reason"] == "action_replayed"

    path = settings.data_dir / "audit.jsonl"
    success, refused = (e for e in entries(path) if e["event"] == "action")
    assert (success["outcome"], success["code"]) == ("success", None)
    assert (refused["outcome"], refused["code"]) == ("refused", "action_replayed")
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    for line in (success, refused):
        assert line["account"] == wallet.caip10()
        assert line["jti_sha256"] == sha256(jti)
        assert line["action_id_sha256"] == sha256(str(doc["id"]))
        assert line["client_ip"] == "192.0.2.10"
    text = path.read_text()
    for secret in (token, signature, signature[2:], str(doc["id"]), jti):
        assert secret not in text
    assert not secrets_in(text)
