"""No token, signature or key ever reaches a log line, the audit log or a server log.

tests/conftest.py scans every captured record and registered server log at the end
of the session for secret-shaped text; these tests drive the flows that handle
secrets, for every account family, with debug logging on, and then look for the
exact tokens, signatures and keys they used, in every encoding one might log.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import base58
import httpx
import pytest
from starlette.testclient import TestClient

from keyproof.server._logs import JsonFormatter
from keyproof.server.app import create_app
from keyproof.server.config import DEFAULT_CHAINS, Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet
from keyproof.stores.memory import MemoryStore
from keyproof.testing import KeyproofServer

from conftest import FrozenClock, secrets_in
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, EthWallet, SolanaWallet


@dataclass(frozen=True)
class Signer:
    """One account family: its account id, how it signs, and its private key bytes."""

    name: str
    account: str
    sign: Callable[[str], str]
    private_key: bytes


def signers() -> list[Signer]:
    eth = EthWallet.create()
    sol = SolanaWallet.create(os.urandom(32))
    ed = AgentEd25519Wallet.create(os.urandom(32))
    k1 = AgentSecp256k1Wallet.create(os.urandom(32))
    return [
        Signer("eip155", eth.caip10(), eth.sign, bytes(eth.account.key)),
        Signer("solana", sol.caip10(), sol.sign, bytes(sol.key)),
        Signer("did:key ed25519", ed.did, ed.sign, bytes(ed.key)),
        Signer("did:key secp256k1", k1.did, k1.sign, k1.key.secret),
    ]


def forger(signer: Signer) -> Callable[[str], str]:
    """A wallet of the same family that does not hold the account's key."""
    others: dict[str, Callable[[str], str]] = {
        "eip155": EthWallet.create().sign,
        "solana": SolanaWallet.create().sign,
        "did:key ed25519": AgentEd25519Wallet.create().sign,
        "did:key secp256k1": AgentSecp256k1Wallet.create().sign,
    }
    return others[signer.name]


def _flow(client: httpx.Client | TestClient, signer: Signer) -> list[str]:
    """Logins that fail and succeed, a replay, a token in a URL, a revocation.

    Returns the signatures and the token the flow produced.
    """
    issued = client.post("/v1/challenge", json={"account": signer.account})
    assert issued.status_code == 201, (signer.name, issued.text)
    message = issued.json()["message"]
    forged = forger(signer)(message)
    refused = client.post("/v1/token", json={"message": message, "signature": forged})
    assert refused.status_code == 401, (signer.name, refused.text)
    signature = signer.sign(message)
    granted = client.post("/v1/token", json={"message": message, "signature": signature})
    assert granted.status_code == 200, (signer.name, granted.text)
    token = granted.json()["access_token"]
    replay = client.post("/v1/token", json={"message": message, "signature": signature})
    assert replay.status_code == 401
    client.get(f"/healthz?access_token={token}")
    client.get(f"/nowhere/{token}")
    client.post("/v1/revoke", json={"token": token})
    return [token, signature, forged]


def decoded(signature: str) -> bytes:
    """The raw bytes behind a signature as sent: 0x-hex, base58 or base64url."""
    if signature.startswith("0x"):
        return bytes.fromhex(signature[2:])
    if len(signature) == 86 and not set(signature) - set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    ):
        return base64.urlsafe_b64decode(signature + "==")
    return base58.b58decode(signature)


def encodings(raw: bytes) -> list[str]:
    """Every common way to write ``raw`` into a log line."""
    return [
        raw.hex(),
        raw.hex().upper(),
        base58.b58encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(raw).decode().rstrip("="),
        repr(raw)[2:-1],
    ]


def secrets_of(flows: list[str], keys: list[bytes]) -> list[str]:
    found = list(flows)
    for text in flows:
        if text.count(".") == 2:  # a JWT: its signature on its own too
            found.append(text.rsplit(".", 1)[1])
        else:
            found.extend(encodings(decoded(text)))
    for key in keys:
        found.extend(encodings(key))
    return found


def server_key_secrets(data_dir: Path) -> list[str]:
    """The server's own signing keys: the ``d`` members of its key file."""
    records = json.loads((data_dir / KEY_FILE_NAME).read_text())["keys"]
    private = [str(record["d"]) for record in records]
    assert private
    return private


def _assert_clean(text: str, secrets: list[str]) -> None:
    assert text
    assert not secrets_in(text)
    for secret in secrets:
        assert secret not in text
        assert secret[-40:] not in text


def test_the_literal_search_finds_every_encoding():
    signature = SolanaWallet.create().sign("hello")
    raw = decoded(signature)
    assert len(raw) == 64
    for written in encodings(raw):
        assert written in secrets_of([signature], [])
        _assert_found_by_search(f"x={written}", [signature])


def _assert_found_by_search(text: str, flows: list[str]) -> None:
    with pytest.raises(AssertionError):
        _assert_clean(text, secrets_of(flows, []))


@pytest.fixture
def quiet_clients() -> Iterator[None]:
    """The tests' own HTTP clients log the URLs they request, tokens included on purpose."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpx2")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("quiet_clients")
def test_in_process_logs_and_audit_hold_no_secrets(
    settings: Settings, keyset: KeySet, clock: FrozenClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="keyproof")
    settings = dataclasses.replace(settings, chains=(*DEFAULT_CHAINS, "eip155:137"))
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    every = signers()
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        flows = [text for signer in every for text in _flow(client, signer)]
    secrets = secrets_of(flows, [signer.private_key for signer in every])
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"keyproof.access"' in line]
    assert {entry["path"] for entry in access} >= {"/v1/token", "/healthz"}
    assert all(entry["request_id"] for entry in access)
    _assert_clean("\n".join(lines), secrets)
    _assert_clean((settings.data_dir / "audit.jsonl").read_text(), secrets)


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_clients")
def test_server_log_and_audit_hold_no_secrets(tmp_path: Path, server_log: list[Path]):
    data = tmp_path / "data"
    every = signers()
    with KeyproofServer(data, args=["--config", str(_debug_config(tmp_path))]) as server:
        server_log.extend([server.log_path, data / "audit.jsonl"])
        with httpx.Client(base_url=server.url, timeout=10) as client:
            flows = [text for signer in every for text in _flow(client, signer)]
    secrets = secrets_of(flows, [signer.private_key for signer in every])
    secrets += server_key_secrets(data)
    log = server.log()
    assert '"logger":"keyproof.access"' in log
    _assert_clean(log, secrets)
    audit = (data / "audit.jsonl").read_text()
    assert len(audit.splitlines()) >= 3 * len(every)  # refused, granted, replayed per family
    _assert_clean(audit, secrets)


def _debug_config(tmp_path: Path) -> Path:
    path = tmp_path / "keyproof.toml"
    path.write_text('[keyproof]\nlog_level = "debug"\n')
    return path
