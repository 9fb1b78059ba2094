"""Sign-in with smart-contract wallets on a real local chain; viem must agree on each case.

Safes (1-of-1, 2-of-2) and an ERC-4337 account, deployed (EIP-1271) and counterfactual
(ERC-6492). Every case is also put to viem's ``verifyMessage`` on the same node, and
no case makes the node mine a block.
"""

from __future__ import annotations

from functools import partial

from eth_account import Account
from eth_account.messages import encode_defunct
from starlette.testclient import TestClient

from keyproof.crypto.secp256k1 import eip191_digest

from .anvil import Anvil
from .flows import challenge, nothing_mined, redeem, rpc_calls
from .smart_wallets import AccountFactory, SafeDeployment
from .viem import Viem


def sign_in(client: TestClient, viem: Viem, address: str, sign, *, valid: bool) -> tuple[int, str]:
    """Redeem a fresh challenge signed by ``sign(digest)``; viem must say ``valid`` too."""
    message = challenge(client, f"eip155:31337:{address}")
    signature = sign(eip191_digest(message.encode()))
    assert viem.verify_message(address, message, signature) is valid
    outcome = redeem(client, message, signature)
    assert (outcome == (200, "ok")) is valid, outcome
    return outcome


def test_safe_one_of_one_signs_in(
    client: TestClient, anvil: Anvil, safes: SafeDeployment, viem: Viem
):
    safe = safes.create([Account.create()], threshold=1, salt=101)
    with nothing_mined(anvil):
        sign_in(client, viem, safe.address, safe.sign, valid=True)
    assert rpc_calls(client) == 1


def test_safe_two_of_two_needs_both_owners(
    client: TestClient, anvil: Anvil, safes: SafeDeployment, viem: Viem
):
    first, second = Account.create(), Account.create()
    safe = safes.create([first, second], threshold=2, salt=102)
    with nothing_mined(anvil):
        for owner in (first, second):
            one_owner = partial(safe.sign, owners=[owner])
            refused = sign_in(client, viem, safe.address, one_owner, valid=False)
            assert refused == (401, "signature_invalid")
        sign_in(client, viem, safe.address, safe.sign, valid=True)


def test_safe_refuses_a_stranger_and_another_message(
    client: TestClient, anvil: Anvil, safes: SafeDeployment, viem: Viem
):
    owner = Account.create()
    safe = safes.create([owner], threshold=1, salt=103)
    other_message = eip191_digest(b"another message")
    with nothing_mined(anvil):
        sign_in(client, viem, safe.address, lambda d: safe.sign(d, [Account.create()]), valid=False)
        sign_in(client, viem, safe.address, lambda d: safe.sign(other_message), valid=False)


def test_eoa_signature_sent_for_a_contract_address_is_refused(
    client: TestClient, anvil: Anvil, safes: SafeDeployment, viem: Viem
):
    owner = Account.create()
    safe = safes.create([owner], threshold=1, salt=104)
    message = challenge(client, f"eip155:31337:{safe.address}")
    personal_sign = "0x" + owner.sign_message(encode_defunct(text=message)).signature.hex()
    assert viem.verify_message(safe.address, message, personal_sign) is False
    with nothing_mined(anvil):
        assert redeem(client, message, personal_sign) == (401, "signature_invalid")
    # The refusal did not use up the challenge: the Safe's own signature still works.
    assert redeem(client, message, safe.sign(eip191_digest(message.encode()))) == (200, "ok")


def test_deployed_erc4337_account_signs_in(
    client: TestClient, anvil: Anvil, account_factory: AccountFactory, viem: Viem
):
    account = account_factory.account(Account.create(), salt=201).deploy()
    assert anvil.code(account.address)
    stranger = account_factory.account(Account.create(), salt=201)
    with nothing_mined(anvil):
        sign_in(client, viem, account.address, account.sign, valid=True)
        sign_in(client, viem, account.address, stranger.sign, valid=False)


def test_counterfactual_erc4337_account_signs_in_without_being_deployed(
    client: TestClient, anvil: Anvil, account_factory: AccountFactory, viem: Viem
):
    account = account_factory.account(Account.create(), salt=202)
    assert anvil.code(account.address) == b""
    with nothing_mined(anvil):
        sign_in(client, viem, account.address, account.sign_counterfactual, valid=True)
    assert anvil.code(account.address) == b"", "the factory call was mined"


def test_counterfactual_signature_of_another_owner_is_refused(
    client: TestClient, anvil: Anvil, account_factory: AccountFactory, viem: Viem
):
    account = account_factory.account(Account.create(), salt=203)
    impostor = account_factory.account(Account.create(), salt=203)

    def sign(digest: bytes) -> str:
        # The right factory call for the address, wrapped around another key's signature.
        wrapped = account.sign_counterfactual(digest)
        return wrapped.replace(account.sign(digest)[2:], impostor.sign(digest)[2:])

    with nothing_mined(anvil):
        sign_in(client, viem, account.address, sign, valid=False)
    assert anvil.code(account.address) == b""


def test_erc6492_wrapper_of_a_deployed_account_is_checked_as_deployed(
    client: TestClient, anvil: Anvil, account_factory: AccountFactory, viem: Viem
):
    account = account_factory.account(Account.create(), salt=204).deploy()
    with nothing_mined(anvil):
        sign_in(client, viem, account.address, account.sign_counterfactual, valid=True)


def test_eoa_on_a_chain_with_an_rpc_never_asks_the_chain(client: TestClient, viem: Viem):
    wallet = Account.create()
    message = challenge(client, f"eip155:31337:{wallet.address}")
    signature = "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex()
    assert viem.verify_message(wallet.address, message, signature) is True
    assert redeem(client, message, signature) == (200, "ok")
    assert rpc_calls(client) == 0
