"""Client keys sign exactly what keyproof's worked examples say (specs/protocol.md §3, Solana,
Agent keys): same account ids, the same signature bytes (ed25519 and RFC 6979 ECDSA are
deterministic), and signatures other libraries accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from keyproof_client import KEY_TYPES, KeyproofClientError, generate_key, parse_key
from nacl.signing import SigningKey

from keyproof.accounts import canonical_account, family_for_message
from keyproof.crypto.encoding import encode_base58, encode_base64url, encode_hex0x

VECTORS = Path(__file__).resolve().parents[2] / "specs" / "vectors" / "sign_in_families.json"
CASES = {case["name"]: case for case in json.loads(VECTORS.read_text())["cases"]}


def seed_text(hex_seed: str) -> str:
    return encode_base64url(bytes.fromhex(hex_seed))


def solana_text(hex_seed: str) -> str:
    seed = bytes.fromhex(hex_seed)
    return encode_base58(seed + bytes(SigningKey(seed).verify_key))


VALID_CASE = {
    "ethereum": "eip155-valid",
    "solana": "solana-valid",
    "ed25519": "did-key-ed25519-valid",
    "secp256k1": "did-key-secp256k1-valid",
}
# The keys of the worked examples in specs/protocol.md (public test keys).
WORKED_EXAMPLES = [
    pytest.param(
        "ethereum",
        "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        "eip155-valid",
        id="ethereum",
    ),
    pytest.param(
        "solana",
        solana_text("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        "solana-valid",
        id="solana",
    ),
    pytest.param(
        "ed25519",
        seed_text("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        "did-key-ed25519-valid",
        id="did-key-ed25519",
    ),
    pytest.param(
        "secp256k1",
        seed_text("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"),
        "did-key-secp256k1-valid",
        id="did-key-secp256k1",
    ),
]


@pytest.mark.parametrize(("key_type", "secret", "case"), WORKED_EXAMPLES)
def test_signs_the_worked_example_byte_for_byte(key_type: str, secret: str, case: str):
    key = parse_key(json.dumps({"type": key_type, "secret": secret}))
    vector = CASES[case]
    assert key.account() == vector["account"]
    assert key.sign(vector["message"]) == vector["signature"]


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_new_key_signs_what_its_family_verifies(key_type: str):
    key = generate_key(key_type)
    vector = CASES[VALID_CASE[key_type]]
    address = (
        vector["account"].rsplit(":", 1)[1]
        if key_type in ("ethereum", "solana")
        else vector["account"]
    )
    message = vector["message"].replace(address, key.address())
    family = family_for_message(message)
    _, account = family.parse(message)
    assert account.id == key.account()
    family.verify(account, message.encode(), key.sign(message))
    assert key.sign(message) != vector["signature"]


def test_eth_account_recovers_the_signer_of_a_personal_sign():
    key = generate_key("ethereum")
    message = "Sign in with your key."
    recovered = Account.recover_message(encode_defunct(text=message), signature=key.sign(message))
    assert recovered == key.address()
    assert Account.from_key(key.secret_text()).address == key.address()


def test_did_of_every_key_names_its_public_key():
    for key_type in KEY_TYPES:
        key = generate_key(key_type)
        assert canonical_account(key.did).public_key == key.public_key
    assert generate_key("ethereum").did.startswith("did:key:zQ3s")
    assert generate_key("solana").did.startswith("did:key:z6Mk")


def test_account_on_another_chain_is_spelt_by_keyproof():
    ethereum, solana = generate_key("ethereum"), generate_key("solana")
    assert ethereum.account("eip155:8453") == f"eip155:8453:{ethereum.address()}"
    devnet = solana.account("solana:devnet")  # a cluster name becomes its CAIP-2 reference
    assert devnet == f"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1:{solana.address()}"


@pytest.mark.parametrize(
    ("key_type", "chain", "code"),
    [
        ("ed25519", "eip155:1", "invalid_account"),
        ("ethereum", "did:key", "invalid_account"),
        ("ethereum", "solana:mainnet", "invalid_account"),
        ("solana", "solana:nowhere", "unsupported_account"),
        ("ethereum", "cosmos:cosmoshub-4", "unsupported_account"),
        ("secp256k1", "cosmos:cosmoshub-4", "invalid_account"),
    ],
)
def test_a_chain_the_key_cannot_use_is_refused(key_type: str, chain: str, code: str):
    with pytest.raises(KeyproofClientError) as refused:
        generate_key(key_type).account(chain)
    assert refused.value.code == code


def test_unknown_key_type_is_refused():
    with pytest.raises(KeyproofClientError) as refused:
        generate_key("rsa")  # type: ignore[arg-type]
    assert refused.value.code == "invalid_key"


def test_a_keys_repr_shows_its_did_and_never_its_secret():
    for key_type in KEY_TYPES:
        key = generate_key(key_type)
        shown = repr(key) + str(key)
        assert key.did in shown and key.secret_text() not in shown
        assert encode_hex0x(key.public_key) not in key.secret_text()
