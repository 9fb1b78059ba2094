"""A chain's node that hangs, fails or answers garbage: 503, fail closed, nothing used up.

These need no local chain: the node is a local server that misbehaves on purpose
(``broken_nodes.py``). The last test brings a real node back and redeems the very
message that was refused while the node was down.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from eth_account import Account

from keyproof.actions import Action, ActionVerifier
from keyproof.chain import ContractWalletConfig, ContractWallets
from keyproof.crypto.secp256k1 import eip191_digest
from keyproof.errors import Unavailable
from keyproof.messages import siwe
from keyproof.server.keys import KeySet
from keyproof.stores.base import Kind
from keyproof.stores.memory import MemoryStore

from .anvil import Anvil
from .broken_nodes import broken_node
from .flows import app_client, chain_settings, challenge, metric, redeem, rpc_calls, rpc_failures
from .smart_wallets import SafeDeployment
from conftest import START, FrozenClock

CONTRACT_SIGNATURE = "0x" + "cd" * 97
REASONS = {
    "down": "unreachable",
    "hang": "timeout",
    "http_500": "http_5xx",
    "not_json": "not_json",
    "too_large": "too_large",
    "rpc_error": "rpc_error",
    "odd_word": "bad_response",
}


@pytest.mark.parametrize("fault", REASONS)
def test_node_fault_fails_closed_with_503_and_keeps_the_challenge(
    fault: str, tmp_path: Path, keyset: KeySet, clock: FrozenClock
):
    store = MemoryStore(clock=clock)
    with broken_node(fault) as url:
        # One failed attempt per IP: were a 503 counted, the second try would be a 429.
        settings = chain_settings(
            tmp_path, {"eip155:31337": url}, rpc_timeout=0.5, failed_token_limit_per_ip=1
        )
        with app_client(settings, keyset, clock, store) as client:
            message = challenge(client, f"eip155:31337:{Account.create().address}")
            for _ in range(2):
                response = client.post(
                    "/v1/token", json={"message": message, "signature": CONTRACT_SIGNATURE}
                )
                assert response.status_code == 503
                assert response.json()["reason"] == "upstream_unavailable"
                assert response.headers["retry-after"] == "5"
            assert rpc_calls(client) == 2
            assert rpc_failures(client, reason=REASONS[fault]) == 2
            latency = "keyproof_rpc_call_duration_seconds_count"
            assert metric(client, latency, chain="eip155:31337") == 2
    nonce = siwe.parse(message).nonce
    assert asyncio.run(store.get(Kind.CHALLENGE, nonce)) is not None


def test_node_url_never_reaches_logs_or_answers(
    tmp_path: Path, keyset: KeySet, clock: FrozenClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    with broken_node("http_500") as url:
        settings = chain_settings(tmp_path, {"eip155:31337": url})
        assert "SECRET" not in repr(settings)
        with app_client(settings, keyset, clock) as client:
            message = challenge(client, f"eip155:31337:{Account.create().address}")
            response = client.post(
                "/v1/token", json={"message": message, "signature": CONTRACT_SIGNATURE}
            )
    assert response.status_code == 503
    assert "SECRET" not in response.text
    assert "eth_call on eip155:31337 failed: http_5xx" in caplog.text
    assert "SECRET" not in caplog.text


def test_message_refused_while_the_node_was_down_redeems_once_it_is_back(
    tmp_path: Path, anvil: Anvil, safes: SafeDeployment, keyset: KeySet, clock: FrozenClock
):
    safe = safes.create([Account.create()], threshold=1, salt=501)
    store = MemoryStore(clock=clock)
    with broken_node("http_500") as url:
        down = chain_settings(tmp_path, {"eip155:31337": url})
        with app_client(down, keyset, clock, store) as client:
            message = challenge(client, f"eip155:31337:{safe.address}")
            signature = safe.sign(eip191_digest(message.encode()))
            assert redeem(client, message, signature) == (503, "upstream_unavailable")
    back = chain_settings(tmp_path, {"eip155:31337": anvil.url})
    with app_client(back, keyset, clock, store) as client:
        assert redeem(client, message, signature) == (200, "ok")
        assert redeem(client, message, signature) == (401, "nonce_used")


async def test_signed_action_fails_closed_when_the_node_is_down(clock: FrozenClock):
    store = MemoryStore(clock=clock)
    account = Account.create().address
    action = Action.parse(
        {
            "service": "Acme Escrow",
            "audience": "http://127.0.0.1:8000",
            "chain": "eip155:31337",
            "type": "escrow.release",
            "object": "escrow-42",
            "id": "7f3c9a1e5b2d4c6f8a0e1b3d5f7a9c2e",
            "deadline": START + 300,
        }
    )
    claims = {"sub": f"eip155:31337:{account}", "aud": "http://127.0.0.1:8000"}
    with broken_node("down") as url:
        wallets = ContractWallets(ContractWalletConfig(rpc_urls={"eip155:31337": url}))
        verifier = ActionVerifier(store, service="Acme Escrow", wallets=wallets, clock=clock)
        with pytest.raises(Unavailable) as refused:
            await verifier.verify(
                action,
                CONTRACT_SIGNATURE,
                claims=claims,
                action_type="escrow.release",
                object_id="escrow-42",
            )
        await wallets.aclose()
    assert refused.value.code == "upstream_unavailable"
    assert await store.count(Kind.ACTION) == 0
