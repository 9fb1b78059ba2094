"""Hostile contracts and signatures on a real local chain: each refused, bounded, unmined.

A contract wallet decides what it signs, so a hostile one can say "valid" to anything,
burn all its gas, revert or answer garbage. keyproof must stay bound to the message's
address and nonce, finish every check with an answer of its own, never send a
transaction, and count every refusal as a failed attempt.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import to_checksum_address
from starlette.testclient import TestClient

from keyproof.chain import ERC6492_SUFFIX, ContractWallets
from keyproof.crypto.secp256k1 import eip191_digest
from keyproof.errors import KeyproofError
from keyproof.messages import siwe
from keyproof.server.components import build_service
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from .anvil import Anvil
from .conftest import NODE_MODULES
from .flows import (
    app_client,
    chain_settings,
    challenge,
    nothing_mined,
    redeem,
    rpc_calls,
    rpc_failures,
)
from .smart_wallets import AccountFactory, SafeDeployment, calldata, deploy_compiled
from .viem import Viem
from conftest import FrozenClock

JUNK_SIGNATURE = "0x" + "ab" * 100


@pytest.fixture(scope="module")
def accepts_everything(anvil: Anvil, compiled: dict[str, Any]) -> str:
    return deploy_compiled(anvil, compiled, "AcceptsEverything")


def test_contract_accepting_everything_signs_in_only_as_itself(
    client: TestClient, anvil: Anvil, accepts_everything: str, safes: SafeDeployment, viem: Viem
):
    yes_man = accepts_everything
    safe = safes.create([Account.create()], threshold=1, salt=301)
    eoa = Account.create().address
    with nothing_mined(anvil):
        own = challenge(client, f"eip155:31337:{yes_man}")
        assert viem.verify_message(yes_man, own, JUNK_SIGNATURE) is True
        assert redeem(client, own, JUNK_SIGNATURE) == (200, "ok")
        for victim in (safe.address, eoa):
            message = challenge(client, f"eip155:31337:{victim}")
            assert viem.verify_message(victim, message, JUNK_SIGNATURE) is False
            assert redeem(client, message, JUNK_SIGNATURE) == (401, "signature_invalid")


def test_contract_accepting_everything_cannot_skip_the_binding_checks(
    client: TestClient, accepts_everything: str, clock: FrozenClock
):
    account = f"eip155:31337:{accepts_everything}"
    issued = siwe.parse(challenge(client, account))

    def variant(**changes: Any) -> str:
        fields = {f: getattr(issued, f) for f in issued.__dataclass_fields__}
        return siwe.SiweMessage(**{**fields, **changes}).to_text()

    refusals = {
        "nonce_unknown": variant(nonce="f" * 32),
        "domain_mismatch": variant(domain="evil.example"),
        "uri_mismatch": variant(uri="https://evil.example"),
        "chain_mismatch": variant(chain_id=1),
    }
    for reason, message in refusals.items():
        assert redeem(client, message, JUNK_SIGNATURE) == (401, reason)
    assert redeem(client, issued.to_text(), JUNK_SIGNATURE) == (200, "ok")
    assert redeem(client, issued.to_text(), JUNK_SIGNATURE) == (401, "nonce_used")
    late = siwe.parse(challenge(client, account))
    soon = variant(nonce=late.nonce, expiration_time="2027-01-15T08:00:01Z")
    clock.advance(1)
    assert redeem(client, soon, JUNK_SIGNATURE) == (401, "message_expired")
    assert rpc_calls(client) == 1, "the chain was asked before the binding checks"


@pytest.mark.parametrize("contract", ["BurnsAllGas", "RevertsAlways", "ReturnsShortMagic"])
def test_hostile_contract_is_refused_not_unavailable(
    client: TestClient, anvil: Anvil, compiled: dict[str, Any], viem: Viem, contract: str
):
    address = deploy_compiled(anvil, compiled, contract)
    assert_refused_by_the_chain(client, anvil, viem, address, JUNK_SIGNATURE)


def test_erc6492_factory_that_burns_all_gas_is_refused_not_unavailable(
    client: TestClient, anvil: Anvil, compiled: dict[str, Any], viem: Viem
):
    burner = deploy_compiled(anvil, compiled, "BurnsAllGas")
    counterfactual = Account.create().address
    wrapped = encode(["address", "bytes", "bytes"], [burner, b"deploy me", b"\x01" * 65])
    signature = "0x" + (wrapped + ERC6492_SUFFIX).hex()
    assert_refused_by_the_chain(client, anvil, viem, counterfactual, signature)


def test_erc6492_factory_deploying_a_gas_burner_after_burning_gas_is_refused(
    client: TestClient, anvil: Anvil, compiled: dict[str, Any], viem: Viem
):
    factory = deploy_compiled(anvil, compiled, "BurningWalletFactory")
    salt = bytes(31) + b"\x07"
    (wallet,) = decode(["address"], anvil.call(factory, calldata("walletAddress(bytes32)", salt)))
    deploy = calldata("deploy(bytes32)", salt)
    wrapped = encode(["address", "bytes", "bytes"], [factory, deploy, b"\x01" * 65])
    signature = "0x" + (wrapped + ERC6492_SUFFIX).hex()
    assert_refused_by_the_chain(client, anvil, viem, to_checksum_address(wallet), signature)
    assert anvil.code(wallet) == b""


def assert_refused_by_the_chain(
    client: TestClient, anvil: Anvil, viem: Viem, address: str, signature: str
) -> None:
    message = challenge(client, f"eip155:31337:{address}")
    assert viem.verify_message(address, message, signature) is False
    with nothing_mined(anvil):
        assert redeem(client, message, signature) == (401, "signature_invalid")
    assert rpc_calls(client) == 1
    assert rpc_failures(client) == 0


def test_erc6492_factory_outside_the_allowlist_is_never_called(
    tmp_path: Path,
    anvil: Anvil,
    account_factory: AccountFactory,
    compiled: dict[str, Any],
    keyset: KeySet,
    clock: FrozenClock,
    viem: Viem,
):
    stranger_factory = AccountFactory.deploy(anvil, NODE_MODULES, compiled)
    settings = chain_settings(
        tmp_path, {anvil.caip2: anvil.url}, erc6492_factories=(account_factory.address,)
    )
    allowed = account_factory.account(Account.create(), salt=401)
    elsewhere = stranger_factory.account(Account.create(), salt=401)
    with app_client(settings, keyset, clock) as client, nothing_mined(anvil):
        message = challenge(client, f"eip155:31337:{elsewhere.address}")
        signature = elsewhere.sign_counterfactual(eip191_digest(message.encode()))
        # viem has no allowlist: the signature itself is good, the factory is refused.
        assert viem.verify_message(elsewhere.address, message, signature) is True
        assert redeem(client, message, signature) == (401, "signature_invalid")
        assert rpc_calls(client) == 0
        message = challenge(client, f"eip155:31337:{allowed.address}")
        signature = allowed.sign_counterfactual(eip191_digest(message.encode()))
        assert redeem(client, message, signature) == (200, "ok")
    without_allowlist = chain_settings(tmp_path, {anvil.caip2: anvil.url})
    with app_client(without_allowlist, keyset, clock) as client:
        message = challenge(client, f"eip155:31337:{elsewhere.address}")
        signature = elsewhere.sign_counterfactual(eip191_digest(message.encode()))
        assert redeem(client, message, signature) == (200, "ok")
    assert anvil.code(elsewhere.address) == b""


def test_contract_refusals_count_as_failed_attempts(
    tmp_path: Path,
    anvil: Anvil,
    compiled: dict[str, Any],
    keyset: KeySet,
    clock: FrozenClock,
):
    reverts = deploy_compiled(anvil, compiled, "RevertsAlways")
    settings = chain_settings(tmp_path, {anvil.caip2: anvil.url}, failed_token_limit_per_ip=2)
    with app_client(settings, keyset, clock) as client:
        message = challenge(client, f"eip155:31337:{reverts}")
        for _ in range(2):
            assert redeem(client, message, JUNK_SIGNATURE) == (401, "signature_invalid")
        assert redeem(client, message, JUNK_SIGNATURE) == (429, "rate_limited")
        assert rpc_calls(client) == 2


async def test_concurrent_redeems_of_one_smart_wallet_message_give_one_token(
    tmp_path: Path, anvil: Anvil, safes: SafeDeployment, keyset: KeySet, clock: FrozenClock
):
    safe = safes.create([Account.create()], threshold=1, salt=302)
    settings = chain_settings(tmp_path, {anvil.caip2: anvil.url})
    wallets = ContractWallets(settings.contract_wallets())
    store = MemoryStore(clock=clock)
    service = build_service(settings, store, keyset, clock, wallets=wallets)
    try:
        issued = await service.challenge(f"eip155:31337:{safe.address}")
        signature = safe.sign(eip191_digest(issued.message.encode()))
        with nothing_mined(anvil):
            outcomes = await asyncio.gather(
                *(service.redeem(issued.message, signature) for _ in range(8)),
                return_exceptions=True,
            )
    finally:
        await wallets.aclose()
        await store.close()
    refusals = [o.code for o in outcomes if isinstance(o, KeyproofError)]
    assert len(outcomes) - len(refusals) == 1
    assert refusals == ["nonce_used"] * 7
