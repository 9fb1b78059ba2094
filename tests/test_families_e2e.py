"""Every account family signs in end to end against a real ``keyproof serve`` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keyproof.crypto.encoding import encode_base58
from keyproof.messages import siws
from keyproof.testing import KeyproofServer

from conftest import SERVER_LOGS, pyjwt_claims
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, EthWallet, SolanaWallet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    data: Path = tmp_path_factory.mktemp("families") / "data"
    with KeyproofServer(data) as running:
        SERVER_LOGS.append(running.log_path)
        yield running


def login(
    server: KeyproofServer, account: str, sign: Callable[[str], str]
) -> tuple[dict[str, str], dict[str, str]]:
    issued = httpx.post(
        f"{server.url}/v1/challenge", json={"account": account, "scope": "profile:read"}
    )
    assert issued.status_code == 201, issued.text
    challenge = issued.json()
    body = {"message": challenge["message"], "signature": sign(challenge["message"])}
    token = httpx.post(f"{server.url}/v1/token", json=body)
    assert token.status_code == 200, token.text
    return challenge, token.json()


def verified_claims(server: KeyproofServer, token: str) -> dict[str, object]:
    metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    return pyjwt_claims(token, metadata["jwks_uri"], audience=server.url, issuer=metadata["issuer"])


def test_solana_wallet_signs_in_end_to_end(server: KeyproofServer) -> None:
    wallet = SolanaWallet.create()
    challenge, token = login(server, wallet.caip10(), wallet.sign)
    assert challenge["account"] == wallet.caip10()
    assert challenge["message"].split("\n")[:2] == [
        f"127.0.0.1:{server.port} wants you to sign in with your Solana account:",
        wallet.address,
    ]
    assert "\nChain ID: mainnet\n" in challenge["message"]
    claims = verified_claims(server, token["access_token"])
    assert claims["sub"] == claims["client_id"] == wallet.caip10()
    assert claims["scope"] == token["scope"] == "profile:read"


def test_solana_cluster_name_in_the_account_is_canonicalized(server: KeyproofServer) -> None:
    wallet = SolanaWallet.create()
    challenge, token = login(server, f"solana:mainnet:{wallet.address}", wallet.sign)
    assert challenge["account"] == f"solana:{siws.CHAIN_REFERENCES['mainnet']}:{wallet.address}"
    assert verified_claims(server, token["access_token"])["sub"] == challenge["account"]


def test_did_key_ed25519_agent_signs_in_end_to_end(server: KeyproofServer) -> None:
    wallet = AgentEd25519Wallet.create()
    challenge, token = login(server, wallet.did, wallet.sign)
    assert challenge["message"].split("\n")[:2] == [
        f"127.0.0.1:{server.port} wants you to sign in with your key:",
        wallet.did,
    ]
    assert "Chain ID" not in challenge["message"]
    assert verified_claims(server, token["access_token"])["sub"] == wallet.did


def test_did_key_secp256k1_agent_signs_in_end_to_end(server: KeyproofServer) -> None:
    wallet = AgentSecp256k1Wallet.create()
    challenge, token = login(server, wallet.did, wallet.sign)
    assert challenge["account"] == wallet.did
    assert wallet.did.startswith("did:key:zQ3s")
    assert verified_claims(server, token["access_token"])["sub"] == wallet.did


def test_did_key_secp256k1_uncompressed_key_is_canonicalized(server: KeyproofServer) -> None:
    wallet = AgentSecp256k1Wallet.create()
    long_did = "did:key:z" + encode_base58(
        b"\xe7\x01" + wallet.key.public_key.format(compressed=False)
    )
    challenge, token = login(server, long_did, wallet.sign)
    assert challenge["account"] == wallet.did
    assert f"\n{wallet.did}\n" in challenge["message"]
    assert verified_claims(server, token["access_token"])["sub"] == wallet.did


def test_ethereum_wallet_still_signs_in_end_to_end(server: KeyproofServer) -> None:
    wallet = EthWallet.create()
    challenge, token = login(server, wallet.caip10(), wallet.sign)
    assert "\nChain ID: 1\n" in challenge["message"]
    assert verified_claims(server, token["access_token"])["sub"] == wallet.caip10()


def test_small_order_ed25519_keys_are_refused_at_challenge(server: KeyproofServer) -> None:
    small = bytes([1] + [0] * 31)
    for account in (
        f"solana:{siws.CHAIN_REFERENCES['mainnet']}:{encode_base58(small)}",
        "did:key:z" + encode_base58(b"\xed\x01" + small),
    ):
        response = httpx.post(f"{server.url}/v1/challenge", json={"account": account})
        assert response.status_code == 400
        assert response.json()["reason"] == "invalid_public_key"
