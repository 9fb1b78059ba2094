"""Signed actions (EIP-712) from smart-contract wallets, on the action's chain.

The Python ``ActionVerifier`` and ``POST /v1/actions/verify`` both ask the chain when the
signature does not recover to the token holder; viem's ``verifyTypedData`` on the same
node must agree on every case, and no case mines a block or burns a refused action id.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keyproof.actions import Action, ActionVerifier
from keyproof.chain import ContractWalletConfig, ContractWallets
from keyproof.crypto.secp256k1 import eip191_digest
from keyproof.errors import KeyproofError
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from .anvil import Anvil
from .flows import app_client, chain_settings, challenge, nothing_mined
from .smart_wallets import AccountFactory, SafeDeployment, hexed, sign_hash
from .viem import Viem
from conftest import START, FrozenClock

SERVICE = "Acme Escrow"
AUDIENCE = "http://127.0.0.1:8000"


def document(**changes: Any) -> dict[str, Any]:
    return {
        "service": SERVICE,
        "audience": AUDIENCE,
        "chain": "eip155:31337",
        "type": "escrow.release",
        "object": "escrow-42",
        "id": secrets.token_hex(16),
        "deadline": START + 300,
        "amount": "12.5",
        "currency": "USDC",
        **changes,
    }


@pytest.fixture
async def store(clock: FrozenClock) -> AsyncIterator[MemoryStore]:
    opened = MemoryStore(clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
async def verifier(
    anvil: Anvil, store: MemoryStore, clock: FrozenClock
) -> AsyncIterator[ActionVerifier]:
    wallets = ContractWallets(ContractWalletConfig(rpc_urls={anvil.caip2: anvil.url}))
    yield ActionVerifier(store, service=SERVICE, wallets=wallets, clock=clock)
    await wallets.aclose()


async def attempt(
    verifier: ActionVerifier, action: Action, address: str, signature: str
) -> KeyproofError | None:
    """The refusal of ``action`` signed for the holder ``address``, or None if verified."""
    claims = {"sub": f"eip155:31337:{address}", "aud": AUDIENCE, "scope": "escrow:release"}
    try:
        await verifier.verify(
            action, signature, claims=claims, action_type="escrow.release", object_id="escrow-42"
        )
    except KeyproofError as refused:
        return refused
    return None


async def check(
    verifier: ActionVerifier, viem: Viem, address: str, sign: Callable[[bytes], str]
) -> str:
    """Verify a fresh action signed by ``sign(digest)``: ``"ok"`` or the refusal code.

    viem must reach the same verdict.
    """
    action = Action.parse(document())
    signature = sign(action.typed_data_digest())
    agrees = viem.verify_typed_data(address, action.typed_data(), signature)
    refused = await attempt(verifier, action, address, signature)
    assert agrees is (refused is None)
    return "ok" if refused is None else refused.code


async def test_safe_signed_actions(
    verifier: ActionVerifier, anvil: Anvil, safes: SafeDeployment, viem: Viem
):
    first, second = Account.create(), Account.create()
    single = safes.create([first], threshold=1, salt=601)
    double = safes.create([first, second], threshold=2, salt=602)
    with nothing_mined(anvil):
        assert await check(verifier, viem, single.address, single.sign) == "ok"
        assert await check(verifier, viem, double.address, double.sign) == "ok"
        only_first = await check(verifier, viem, double.address, lambda d: double.sign(d, [first]))
        assert only_first == "action_signer_mismatch"
        as_eoa = await check(verifier, viem, single.address, lambda d: hexed(sign_hash(first, d)))
        assert as_eoa == "action_signer_mismatch"


async def test_erc4337_account_signed_actions(
    verifier: ActionVerifier, anvil: Anvil, account_factory: AccountFactory, viem: Viem
):
    deployed = account_factory.account(Account.create(), salt=603).deploy()
    counterfactual = account_factory.account(Account.create(), salt=604)
    with nothing_mined(anvil):
        assert await check(verifier, viem, deployed.address, deployed.sign) == "ok"
        ok = await check(verifier, viem, counterfactual.address, counterfactual.sign_counterfactual)
        assert ok == "ok"
        stranger = account_factory.account(Account.create(), salt=604)
        refused = await check(verifier, viem, deployed.address, stranger.sign)
        assert refused == "action_signer_mismatch"
    assert anvil.code(counterfactual.address) == b""


async def test_refused_contract_signature_does_not_use_up_the_action_id(
    verifier: ActionVerifier, safes: SafeDeployment
):
    owner = Account.create()
    safe = safes.create([owner], threshold=1, salt=605)
    action = Action.parse(document())
    digest = action.typed_data_digest()

    async def verify(signature: str) -> str:
        refused = await attempt(verifier, action, safe.address, signature)
        return "ok" if refused is None else refused.code

    assert await verify(safe.sign(digest, [Account.create()])) == "action_signer_mismatch"
    assert await verify(safe.sign(digest)) == "ok"
    assert await verify(safe.sign(digest)) == "action_replayed"


async def test_without_an_rpc_contract_signed_actions_are_refused(
    store: MemoryStore, clock: FrozenClock, account_factory: AccountFactory, safes: SafeDeployment
):
    eoa_only = ActionVerifier(store, service=SERVICE, clock=clock)
    safe = safes.create([Account.create()], threshold=1, salt=606)
    counterfactual = account_factory.account(Account.create(), salt=606)
    action = Action.parse(document())
    digest = action.typed_data_digest()
    refusals = [
        await attempt(eoa_only, action, safe.address, safe.sign(digest)),
        await attempt(
            eoa_only, action, counterfactual.address, counterfactual.sign_counterfactual(digest)
        ),
    ]
    codes = [(r.code, "no RPC" in r.description) for r in refusals if r is not None]
    # A 65-byte Safe signature keeps the EOA verdict; an ERC-6492 one says what is missing.
    assert codes == [("action_signer_mismatch", False), ("signature_invalid", True)]


def test_actions_verify_endpoint_asks_the_chain(
    tmp_path: Path,
    anvil: Anvil,
    safes: SafeDeployment,
    keyset: KeySet,
    clock: FrozenClock,
    viem: Viem,
):
    first, second = Account.create(), Account.create()
    safe = safes.create([first, second], threshold=2, salt=607)
    settings = chain_settings(tmp_path, {anvil.caip2: anvil.url})
    expect = {
        "service": SERVICE,
        "audience": AUDIENCE,
        "type": "escrow.release",
        "object": "escrow-42",
        "scope": "escrow:release",
    }
    with app_client(settings, keyset, clock) as client, nothing_mined(anvil):
        message = challenge(client, f"eip155:31337:{safe.address}", "escrow:release")
        signed = client.post(
            "/v1/token",
            json={"message": message, "signature": safe.sign(eip191_digest(message.encode()))},
        )
        token = signed.json()["access_token"]

        def submit(signature: str, action: dict[str, Any]) -> tuple[int, str]:
            response = client.post(
                "/v1/actions/verify",
                json={"action": action, "signature": signature, "expect": expect},
                headers={"Authorization": f"Bearer {token}"},
            )
            body = response.json()
            return response.status_code, body.get("reason") or body["signer"]

        action = document()
        digest = Action.parse(action).typed_data_digest()
        typed = Action.parse(action).typed_data()
        one_owner = safe.sign(digest, [first])
        assert viem.verify_typed_data(safe.address, typed, one_owner) is False
        assert submit(one_owner, action) == (401, "action_signer_mismatch")
        both = safe.sign(digest)
        assert viem.verify_typed_data(safe.address, typed, both) is True
        assert submit(both, action) == (200, f"eip155:31337:{safe.address}")
        assert submit(both, action) == (401, "action_replayed")
