"""examples/escrow.py against a real keyproof server: tokens, scopes, signed releases."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyproof.actions import Action
from keyproof.testing import KeyproofServer, ServerProcess, free_port

from wallets import EthWallet

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "escrow.py"
CLIENT_ID = "escrow-rs"
# (escrow id, depositor, amount, currency); depositors are wallets the tests hold.
ESCROWS = [
    ("escrow-a1", "alice", "100", "USDC"),
    ("escrow-a2", "alice", "7", "USDC"),
    ("escrow-b1", "bob", "2.5", "ETH"),
    ("escrow-c1", "carol", "40", "USDC"),
    ("escrow-d1", "dave", "1", "ETH"),
]


def escrow_process(args: list[str], env: dict[str, str], port: int, log: Path) -> ServerProcess:
    """``python examples/escrow.py`` in a child process."""
    command = [sys.executable, str(EXAMPLE), *args, "--port", str(port)]
    return ServerProcess(command, url=f"http://127.0.0.1:{port}", log_path=log, env=env)


@dataclass
class Services:
    keyproof: str
    escrow: str
    wallets: dict[str, EthWallet]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from conftest import SERVER_LOGS

    data = tmp_path_factory.mktemp("escrow")
    keyproof_port, escrow_port = free_port(), free_port()
    secret = secrets.token_urlsafe(24)
    config = data / "keyproof.toml"
    config.write_text(
        "[keyproof]\n"
        f'audiences = ["http://127.0.0.1:{keyproof_port}", "http://127.0.0.1:{escrow_port}"]\n'
        "[keyproof.introspection_clients]\n"
        f'{CLIENT_ID} = "{hashlib.sha256(secret.encode()).hexdigest()}"\n'
        "[policy]\n"
        'scopes = ["escrow:read", "escrow:release"]\n'
        'default = ["escrow:read"]\n'
        "[policy.namespaces]\n"
        'eip155 = ["escrow:release"]\n'
    )
    wallets = {name: EthWallet.create() for name in ("alice", "bob", "carol", "dave")}
    escrows = data / "escrows.json"
    escrows.write_text(
        json.dumps(
            [
                {
                    "id": escrow_id,
                    "amount": amount,
                    "currency": currency,
                    "depositor": wallets[owner].caip10(),
                    "beneficiary": "eip155:1:0x000000000000000000000000000000000000dEaD",
                }
                for escrow_id, owner, amount, currency in ESCROWS
            ]
        )
    )
    with KeyproofServer(data / "kp", args=["--config", str(config)], port=keyproof_port) as kp:
        SERVER_LOGS.append(kp.log_path)
        args = ["--keyproof", kp.url, "--escrows", str(escrows)]
        args += ["--introspection-client-id", CLIENT_ID]
        env = {"ESCROW_INTROSPECTION_CLIENT_SECRET": secret}
        escrow = escrow_process(args, env, escrow_port, data / "escrow.log")
        SERVER_LOGS.append(escrow.log_path)
        with escrow:
            yield Services(kp.url, escrow.url, wallets)


def access_token(services: Services, wallet: EthWallet, scope: str) -> str:
    body = {"account": wallet.caip10(), "scope": scope, "audience": services.escrow}
    issued = httpx.post(f"{services.keyproof}/v1/challenge", json=body)
    assert issued.status_code == 201, issued.text
    message = issued.json()["message"]
    signed = {"message": message, "signature": wallet.sign(message)}
    token = httpx.post(f"{services.keyproof}/v1/token", json=signed)
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


def login(services: Services, wallet: EthWallet, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(services, wallet, scope)}"}


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


def release(services: Services, escrow_id: str, signed: Any, auth: dict[str, str]):
    url = f"{services.escrow}/escrows/{escrow_id}/release"
    return httpx.post(url, json=signed, headers=auth)


def status(services: Services, escrow_id: str, auth: dict[str, str]) -> str:
    response = httpx.get(f"{services.escrow}/escrows/{escrow_id}", headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def test_read_release_replay_and_moved_action(services: Services):
    alice = services.wallets["alice"]
    auth = login(services, alice, "escrow:read escrow:release")

    read = httpx.get(f"{services.escrow}/escrows/escrow-a1", headers=auth)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "funded"
    assert read.json()["depositor"] == alice.caip10()

    signed = release_action(alice, services.escrow, "escrow-a1", "100", "USDC")
    moved = release(services, "escrow-a2", signed, auth)  # alice's other escrow
    assert moved.status_code == 401
    assert moved.json()["reason"] == "action_domain_mismatch"

    released = release(services, "escrow-a1", signed, auth)
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert released.json()["released_by"] == alice.caip10()

    replayed = release(services, "escrow-a1", signed, auth)
    assert replayed.status_code == 401
    assert replayed.json()["reason"] == "action_replayed"


def test_stranger_with_valid_token_and_signed_action_cannot_release(services: Services):
    stranger, carol = EthWallet.create(), services.wallets["carol"]
    auth = login(services, stranger, "escrow:read escrow:release")
    signed = release_action(stranger, services.escrow, "escrow-c1", "40", "USDC")
    refused = release(services, "escrow-c1", signed, auth)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "not_depositor"
    assert status(services, "escrow-c1", auth) == "funded"

    owner = login(services, carol, "escrow:read escrow:release")
    mine = release_action(carol, services.escrow, "escrow-c1", "40", "USDC")
    assert release(services, "escrow-c1", mine, owner).status_code == 200


def test_revoked_token_cannot_release(services: Services):
    dave = services.wallets["dave"]
    token = access_token(services, dave, "escrow:read escrow:release")
    auth = {"Authorization": f"Bearer {token}"}
    revoked = httpx.post(f"{services.keyproof}/v1/revoke", data={"token": token})
    assert revoked.status_code == 200
    signed = release_action(dave, services.escrow, "escrow-d1", "1", "ETH")
    refused = release(services, "escrow-d1", signed, auth)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    fresh = login(services, dave, "escrow:read escrow:release")
    assert status(services, "escrow-d1", fresh) == "funded"
    assert release(services, "escrow-d1", signed, fresh).status_code == 200


def test_release_signed_by_another_key_is_refused(services: Services):
    bob, other = services.wallets["bob"], EthWallet.create()
    auth = login(services, bob, "escrow:read escrow:release")
    signed = release_action(other, services.escrow, "escrow-b1", "2.5", "ETH")
    response = release(services, "escrow-b1", signed, auth)
    assert response.status_code == 401
    assert response.json()["reason"] == "action_signer_mismatch"


def test_release_needs_the_release_scope_and_a_signed_action(services: Services):
    bob = services.wallets["bob"]
    read_only = login(services, bob, "escrow:read")
    signed = release_action(bob, services.escrow, "escrow-b1", "2.5", "ETH")
    refused = release(services, "escrow-b1", signed, read_only)
    assert refused.status_code == 403
    assert 'scope="escrow:release"' in refused.headers["www-authenticate"]

    auth = login(services, bob, "escrow:read escrow:release")
    unsigned = release(services, "escrow-b1", {}, auth)
    assert unsigned.status_code == 400
    assert unsigned.json()["reason"] == "malformed_action"

    anonymous = httpx.get(f"{services.escrow}/escrows/escrow-b1")
    assert anonymous.status_code == 401


def test_token_for_keyproof_audience_is_refused_by_the_escrow(services: Services):
    wallet = EthWallet.create()
    body = {"account": wallet.caip10(), "scope": "escrow:read"}
    issued = httpx.post(f"{services.keyproof}/v1/challenge", json=body).json()
    signed = {"message": issued["message"], "signature": wallet.sign(issued["message"])}
    token = httpx.post(f"{services.keyproof}/v1/token", json=signed).json()["access_token"]
    foreign = {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"{services.escrow}/escrows/escrow-a1", headers=foreign)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_release_of_another_amount_is_refused(services: Services):
    bob = services.wallets["bob"]
    auth = login(services, bob, "escrow:read escrow:release")
    signed = release_action(bob, services.escrow, "escrow-b1", "2.4", "ETH")
    response = release(services, "escrow-b1", signed, auth)
    assert response.status_code == 409
    assert status(services, "escrow-b1", auth) == "funded"


def test_example_refuses_to_start_without_introspection_credentials(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--keyproof", "http://127.0.0.1:1"],
        env={k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ESCROW_INTROSPECTION_CLIENT_SECRET" in result.stderr
