"""examples/escrow.py against a real keyproof server: tokens, scopes, signed releases."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyproof.actions import Action
from keyproof.testing import KeyproofServer, free_port

from wallets import EthWallet

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "escrow.py"


class EscrowProcess:
    """``python examples/escrow.py`` in a child process, healthy before use."""

    def __init__(self, keyproof_url: str, port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        command = [sys.executable, str(EXAMPLE), "--keyproof", keyproof_url, "--port", str(port)]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"escrow example exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"escrow example did not start:\n{log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from conftest import SERVER_LOGS

    data = tmp_path_factory.mktemp("escrow")
    keyproof_port, escrow_port = free_port(), free_port()
    config = data / "keyproof.toml"
    config.write_text(
        "[keyproof]\n"
        f'audiences = ["http://127.0.0.1:{keyproof_port}", "http://127.0.0.1:{escrow_port}"]\n'
        "[policy]\n"
        'scopes = ["escrow:read", "escrow:release"]\n'
        'default = ["escrow:read"]\n'
        "[policy.namespaces]\n"
        'eip155 = ["escrow:release"]\n'
    )
    with KeyproofServer(data / "kp", args=["--config", str(config)], port=keyproof_port) as kp:
        SERVER_LOGS.append(kp.log_path)
        escrow = EscrowProcess(kp.url, escrow_port, data / "escrow.log")
        SERVER_LOGS.append(escrow.log_path)
        try:
            yield kp.url, escrow.url
        finally:
            escrow.stop()


def login(keyproof_url: str, escrow_url: str, wallet: EthWallet, scope: str) -> dict[str, str]:
    body = {"account": wallet.caip10(), "scope": scope, "audience": escrow_url}
    issued = httpx.post(f"{keyproof_url}/v1/challenge", json=body)
    assert issued.status_code == 201, issued.text
    message = issued.json()["message"]
    signed = {"message": message, "signature": wallet.sign(message)}
    token = httpx.post(f"{keyproof_url}/v1/token", json=signed)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def release_action(
    wallet: EthWallet, escrow_url: str, escrow_id: str, amount: str, currency: str
) -> dict[str, Any]:
    doc = {
        "service": "Acme Escrow",
        "audience": escrow_url,
        "chain": "eip155:1",
        "type": "escrow.release",
        "object": escrow_id,
        "id": secrets.token_hex(16),
        "deadline": int(time.time()) + 600,  # the example runs on wall time
        "amount": amount,
        "currency": currency,
    }
    return {"action": doc, "signature": wallet.sign_typed_data(Action.parse(doc).typed_data())}


def test_read_release_replay_and_moved_action(services: tuple[str, str]):
    keyproof_url, escrow_url = services
    wallet = EthWallet.create()
    auth = login(keyproof_url, escrow_url, wallet, "escrow:read escrow:release")

    read = httpx.get(f"{escrow_url}/escrows/escrow-1", headers=auth)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "funded"

    signed = release_action(wallet, escrow_url, "escrow-1", "100", "USDC")
    moved = httpx.post(f"{escrow_url}/escrows/escrow-2/release", json=signed, headers=auth)
    assert moved.status_code == 401
    assert moved.json()["reason"] == "action_domain_mismatch"

    released = httpx.post(f"{escrow_url}/escrows/escrow-1/release", json=signed, headers=auth)
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert released.json()["released_by"] == wallet.caip10()

    replayed = httpx.post(f"{escrow_url}/escrows/escrow-1/release", json=signed, headers=auth)
    assert replayed.status_code == 401
    assert replayed.json()["reason"] == "action_replayed"


def test_release_signed_by_another_key_is_refused(services: tuple[str, str]):
    keyproof_url, escrow_url = services
    holder, other = EthWallet.create(), EthWallet.create()
    auth = login(keyproof_url, escrow_url, holder, "escrow:read escrow:release")
    signed = release_action(other, escrow_url, "escrow-2", "2.5", "ETH")
    response = httpx.post(f"{escrow_url}/escrows/escrow-2/release", json=signed, headers=auth)
    assert response.status_code == 401
    assert response.json()["reason"] == "action_signer_mismatch"


def test_release_needs_the_release_scope_and_a_signed_action(services: tuple[str, str]):
    keyproof_url, escrow_url = services
    wallet = EthWallet.create()
    read_only = login(keyproof_url, escrow_url, wallet, "escrow:read")
    signed = release_action(wallet, escrow_url, "escrow-2", "2.5", "ETH")
    refused = httpx.post(f"{escrow_url}/escrows/escrow-2/release", json=signed, headers=read_only)
    assert refused.status_code == 403
    assert 'scope="escrow:release"' in refused.headers["www-authenticate"]

    auth = login(keyproof_url, escrow_url, wallet, "escrow:read escrow:release")
    unsigned = httpx.post(f"{escrow_url}/escrows/escrow-2/release", json={}, headers=auth)
    assert unsigned.status_code == 400
    assert unsigned.json()["reason"] == "malformed_action"

    anonymous = httpx.get(f"{escrow_url}/escrows/escrow-2")
    assert anonymous.status_code == 401


def test_token_for_keyproof_audience_is_refused_by_the_escrow(services: tuple[str, str]):
    keyproof_url, escrow_url = services
    wallet = EthWallet.create()
    foreign = login(keyproof_url, keyproof_url, wallet, "escrow:read")
    response = httpx.get(f"{escrow_url}/escrows/escrow-1", headers=foreign)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_release_of_another_amount_is_refused(services: tuple[str, str]):
    keyproof_url, escrow_url = services
    wallet = EthWallet.create()
    auth = login(keyproof_url, escrow_url, wallet, "escrow:read escrow:release")
    signed = release_action(wallet, escrow_url, "escrow-2", "2.4", "ETH")
    response = httpx.post(f"{escrow_url}/escrows/escrow-2/release", json=signed, headers=auth)
    assert response.status_code == 409
    assert httpx.get(f"{escrow_url}/escrows/escrow-2", headers=auth).json()["status"] == "funded"
