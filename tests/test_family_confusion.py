"""Account-family confusion: a proof for one family, key or encoding never passes for another.

Every refused attempt here is well formed, so it must be a 401 (or a 400 where the
wire encoding itself pins the family) and must leave the challenge redeemable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import base58
import coincurve
import pytest
from eth_account.messages import encode_defunct
from starlette.testclient import TestClient

from keyproof.accounts import families, family_for_message
from keyproof.crypto import secp256k1
from keyproof.crypto.encoding import encode_base64url
from keyproof.errors import KeyproofError
from keyproof.messages import siws
from keyproof.server.app import create_app
from keyproof.server.config import DEFAULT_CHAINS, Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from conftest import TEST_POLICY, FrozenClock
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, EthWallet, SolanaWallet


@dataclass
class Login:
    """One family's wallet: the account it asks for and how it signs bytes on the wire."""

    account: str
    sign_bytes: Callable[[bytes], str]

    def sign(self, text: str) -> str:
        return self.sign_bytes(text.encode("utf-8"))


def eth_login(wallet: EthWallet) -> Login:
    def sign(data: bytes) -> str:
        signed = wallet.account.sign_message(encode_defunct(primitive=data))
        return "0x" + bytes(signed.signature).hex()

    return Login(wallet.caip10(), sign)


def solana_login(wallet: SolanaWallet) -> Login:
    return Login(wallet.caip10(), lambda data: base58.b58encode(wallet.sign_bytes(data)).decode())


def agent_login(wallet: AgentEd25519Wallet | AgentSecp256k1Wallet) -> Login:
    return Login(wallet.did, lambda data: encode_base64url(wallet.sign_bytes(data)))


LOGINS: dict[str, Callable[[], Login]] = {
    "eip155": lambda: eth_login(EthWallet.create()),
    "solana": lambda: solana_login(SolanaWallet.create()),
    "did-key-ed25519": lambda: agent_login(AgentEd25519Wallet.create()),
    "did-key-secp256k1": lambda: agent_login(AgentSecp256k1Wallet.create()),
}


@pytest.fixture
def client(tmp_path: Path, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, store="memory://", chains=DEFAULT_CHAINS, policy=TEST_POLICY
    )
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def challenge(client: TestClient, account: str) -> str:
    response = client.post("/v1/challenge", json={"account": account})
    assert response.status_code == 201, response.text
    return str(response.json()["message"])


def redeem(client: TestClient, message: str, signature: str) -> tuple[int, str]:
    response = client.post("/v1/token", json={"message": message, "signature": signature})
    return response.status_code, str(response.json().get("reason", ""))


def assert_refused_then_redeemable(
    client: TestClient, message: str, forged: str, login: Login, expected: tuple[int, str]
) -> None:
    assert redeem(client, message, forged) == expected
    assert redeem(client, message, login.sign(message))[0] == 200


def test_family_registry_finds_exactly_eip155_solana_did_key() -> None:
    assert sorted(families()) == ["did:key", "eip155", "solana"]
    assert {f.header_suffix for f in families().values()} == {
        " wants you to sign in with your Ethereum account:",
        " wants you to sign in with your Solana account:",
        " wants you to sign in with your key:",
    }


def test_metadata_lists_every_family(client: TestClient) -> None:
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["account_types_supported"] == ["did:key", "eip155", "solana"]


# --- signatures of another family ------------------------------------------------------


def test_solana_signature_presented_for_eip155_challenge_is_401(client: TestClient) -> None:
    eth, solana = eth_login(EthWallet.create()), SolanaWallet.create()
    message = challenge(client, eth.account)
    raw = solana.sign_bytes(message.encode())
    # Shaped like the family's own wire format (0x-hex r‖s‖v) so it reaches verification.
    shaped = "0x" + raw.hex() + "1b"
    assert_refused_then_redeemable(client, message, shaped, eth, (401, "signature_invalid"))


def test_solana_wire_signature_for_eip155_challenge_is_malformed(client: TestClient) -> None:
    eth, solana = eth_login(EthWallet.create()), SolanaWallet.create()
    message = challenge(client, eth.account)
    forged = solana.sign(message)
    assert_refused_then_redeemable(client, message, forged, eth, (400, "malformed_signature"))


def test_ed25519_signature_over_did_key_secp256k1_challenge_is_401(client: TestClient) -> None:
    secp, ed = agent_login(AgentSecp256k1Wallet.create()), AgentEd25519Wallet.create()
    message = challenge(client, secp.account)
    forged = ed.sign(message)
    assert_refused_then_redeemable(client, message, forged, secp, (401, "signature_invalid"))


def test_secp256k1_signature_over_did_key_ed25519_challenge_is_401(client: TestClient) -> None:
    ed, secp = agent_login(AgentEd25519Wallet.create()), AgentSecp256k1Wallet.create()
    message = challenge(client, ed.account)
    forged = secp.sign(message)
    assert_refused_then_redeemable(client, message, forged, ed, (401, "signature_invalid"))


def test_same_ed25519_key_solana_proof_does_not_pass_as_did_key(client: TestClient) -> None:
    solana = SolanaWallet.create()
    agent = AgentEd25519Wallet(solana.key)
    agent_message = challenge(client, agent.did)
    siws_message = challenge(client, solana.caip10())
    reencoded = encode_base64url(solana.sign_bytes(siws_message.encode()))
    expected = (401, "signature_invalid")
    assert_refused_then_redeemable(client, agent_message, reencoded, agent_login(agent), expected)


def test_same_ed25519_key_cannot_switch_family_around_a_nonce(client: TestClient) -> None:
    solana = SolanaWallet.create()
    agent = AgentEd25519Wallet(solana.key)
    agent_message = challenge(client, agent.did)
    siws_message = challenge(client, solana.caip10())
    nonce_of_agent = agent_message.split("Nonce: ")[1].split("\n")[0]
    nonce_of_siws = siws_message.split("Nonce: ")[1].split("\n")[0]
    switched = siws_message.replace(nonce_of_siws, nonce_of_agent)
    assert redeem(client, switched, solana.sign(switched)) == (401, "account_mismatch")
    assert redeem(client, agent_message, agent.sign(agent_message))[0] == 200


# --- a signature over another encoding of the text -------------------------------------


def _other_encoding(text: str, encoding: str) -> bytes:
    return text.encode().hex().encode() if encoding == "hex" else text.encode(encoding)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "hex"])
@pytest.mark.parametrize("family", LOGINS)
def test_signature_over_another_encoding_of_the_text_is_401(
    client: TestClient, family: str, encoding: str
) -> None:
    login = LOGINS[family]()
    message = challenge(client, login.account)
    forged = login.sign_bytes(_other_encoding(message, encoding))
    assert_refused_then_redeemable(client, message, forged, login, (401, "signature_invalid"))


# --- another key than the message's address -------------------------------------------


@pytest.mark.parametrize("family", LOGINS)
def test_signature_by_another_key_than_the_address_is_401(client: TestClient, family: str) -> None:
    login, intruder = LOGINS[family](), LOGINS[family]()
    message = challenge(client, login.account)
    forged = intruder.sign(message)
    assert_refused_then_redeemable(client, message, forged, login, (401, "signature_invalid"))


# --- SIWS: what keyproof requires -----------------------------------------------------


def test_siws_minimal_message_is_refused(client: TestClient) -> None:
    wallet = SolanaWallet.create()
    minimal = f"127.0.0.1:8000 wants you to sign in with your Solana account:\n{wallet.address}"
    assert redeem(client, minimal, wallet.sign(minimal)) == (400, "malformed_message")


@pytest.mark.parametrize("line", ["Issued At: ", "Nonce: ", "Expiration Time: "])
def test_siws_challenge_without_a_required_field_is_refused(client: TestClient, line: str) -> None:
    login = solana_login(SolanaWallet.create())
    message = challenge(client, login.account)
    lines = message.split("\n")
    stripped = "\n".join(x for x in lines if not x.startswith(line))
    assert stripped != message
    forged = login.sign(stripped)
    assert redeem(client, stripped, forged) == (400, "malformed_message")
    assert redeem(client, message, login.sign(message))[0] == 200


def test_siws_chain_outside_configuration_is_refused_at_challenge(client: TestClient) -> None:
    wallet = SolanaWallet.create()
    response = client.post(
        "/v1/challenge", json={"account": wallet.caip10(siws.CHAIN_REFERENCES["devnet"])}
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "unsupported_account"


@pytest.mark.parametrize("chain_id", ["devnet", "solana:testnet"])
def test_siws_chain_id_outside_configuration_is_refused_on_redeem(
    client: TestClient, chain_id: str
) -> None:
    login = solana_login(SolanaWallet.create())
    message = challenge(client, login.account)
    moved = message.replace("Chain ID: mainnet", f"Chain ID: {chain_id}")
    assert moved != message
    assert redeem(client, moved, login.sign(moved)) == (401, "chain_mismatch")
    assert redeem(client, message, login.sign(message))[0] == 200


def test_siws_localnet_is_refused(client: TestClient) -> None:
    login = solana_login(SolanaWallet.create())
    message = challenge(client, login.account)
    moved = message.replace("Chain ID: mainnet", "Chain ID: localnet")
    assert redeem(client, moved, login.sign(moved)) == (400, "unsupported_account")
    assert redeem(client, message, login.sign(message))[0] == 200


# --- language-neutral vectors: specs/vectors/sign_in_families.json ---------------------

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "specs/vectors/sign_in_families.json").read_text()
)["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_sign_in_family_vectors(case: dict[str, str]) -> None:
    family = family_for_message(case["message"])
    _, account = family.parse(case["message"])
    assert account.id == case["account"]
    if case["result"] == "valid":
        family.verify(account, case["message"].encode("utf-8"), case["signature"])
        return
    with pytest.raises(KeyproofError) as refused:
        family.verify(account, case["message"].encode("utf-8"), case["signature"])
    assert refused.value.code == case["result"]


def test_vectors_cover_every_outcome() -> None:
    assert {c["result"] for c in VECTORS} == {"valid", "signature_invalid", "malformed_signature"}
    assert len({c["name"] for c in VECTORS}) == len(VECTORS)


def test_vectors_cover_every_family_and_outcome() -> None:
    outcomes: dict[str, set[str]] = {}
    for case in VECTORS:
        namespace = family_for_message(case["message"]).namespace
        outcomes.setdefault(namespace, set()).add(case["result"])
    assert set(outcomes) == set(families())
    for namespace, results in outcomes.items():
        assert results == {"valid", "signature_invalid", "malformed_signature"}, namespace


def _eip155_cases(suffix: str) -> list[dict[str, str]]:
    return [c for c in VECTORS if c["name"].startswith("eip155-") and c["name"].endswith(suffix)]


@pytest.mark.parametrize("case", _eip155_cases("high-s"), ids=lambda c: c["name"])
def test_eip155_high_s_vectors_are_refused_only_by_the_low_s_rule(case: dict[str, str]) -> None:
    # Without keyproof's low-S rule the twin recovers the signer: the refusal is policy.
    signature = bytes.fromhex(case["signature"].removeprefix("0x"))
    s = int.from_bytes(signature[32:64], "big")
    assert s > secp256k1.CURVE_ORDER // 2
    compact = signature[:64] + bytes([signature[64] - 27])
    digest = secp256k1.eip191_digest(case["message"].encode("utf-8"))
    key = coincurve.PublicKey.from_signature_and_message(compact, digest, hasher=None)
    address = secp256k1.address_from_public_key(key.format(compressed=True))
    assert case["account"].endswith(":" + secp256k1.checksum_address(address))


def test_eip155_valid_vector_is_the_worked_example_in_the_spec() -> None:
    spec = (Path(__file__).resolve().parents[1] / "specs/protocol.md").read_text("utf-8")
    (case,) = [c for c in VECTORS if c["name"] == "eip155-valid"]
    assert f"```text\n{case['message']}\n```" in spec
    assert f"`{case['signature']}`" in spec
