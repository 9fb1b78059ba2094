"""Client-side and signed-action cases: keyproof-client and keyproof helpers vs eth-account,
eth-abi and PyJWT doing the same job (same bytes out, checked before timing)."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from benchmarks.harness import compare_case, repeat
from keyproof.actions import ACTION_TYPES, Action
from keyproof.crypto import eip712
from keyproof.crypto.secp256k1 import keccak256


def extra_cases(rounds: int, seconds: float) -> list[dict[str, Any]]:
    from benchmarks.inprocess import siwe_fixture

    text = siwe_fixture()[0]
    return [
        _dpop_proof_case(rounds, seconds),
        _personal_sign_case(text, rounds, seconds),
        _eip712_case(rounds, seconds),
        _contract_check_case(rounds, seconds),
    ]


def _dpop_proof_case(rounds: int, seconds: float) -> dict[str, Any]:
    """keyproof-client's per-request ES256 DPoP proof (keyproof.jose) against PyJWT's."""
    import secrets

    import httpx
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from keyproof_client._dpop import DPoPKey

    from keyproof import jose
    from keyproof.dpop import access_token_hash

    key, token = DPoPKey("ES256"), "a" * 600
    url = httpx.URL("https://api.example.com/jobs?page=2")  # what a request carries
    private = ec.generate_private_key(ec.SECP256R1())
    header = {"typ": "dpop+jwt", "jwk": jose.public_jwk(private.public_key())}

    def baseline() -> object:
        htu = str(url.copy_with(query=None))
        claims = {"jti": secrets.token_urlsafe(18), "htm": "GET", "htu": htu, "iat": 1}
        claims["ath"] = access_token_hash(token)
        return jwt.encode(claims, private, algorithm="ES256", headers=header)

    def ours() -> object:
        return key.proof("GET", url, now=1, access_token=token)

    return compare_case(
        "client_dpop_proof",
        repeat(ours),
        {"PyJWT encode ES256": repeat(baseline)},
        rounds=rounds,
        seconds=seconds,
    )


def _personal_sign_case(text: str, rounds: int, seconds: float) -> dict[str, Any]:
    """keyproof-client's EIP-191 signing (coincurve) against eth-account's, same key."""
    from keyproof_client import generate_key

    key = generate_key("ethereum")
    wallet = Account.from_key(key.secret_text())

    def baseline() -> str:
        return "0x" + bytes(wallet.sign_message(encode_defunct(text=text)).signature).hex()

    if key.sign(text) != baseline():  # both RFC 6979: the same bytes
        raise RuntimeError("personal_sign signatures differ")
    return compare_case(
        "client_personal_sign",
        repeat(lambda: key.sign(text)),
        {"eth-account sign_message": repeat(baseline)},
        rounds=rounds,
        seconds=seconds,
    )


def _eip712_case(rounds: int, seconds: float) -> dict[str, Any]:
    """The digest a wallet signs for a signed action, from the same typed-data payload."""
    payload = Action.parse(
        {
            "service": "Acme Escrow",
            "audience": "https://escrow.example.com",
            "chain": "eip155:1",
            "type": "escrow.release",
            "object": "escrow-42",
            "id": "7f3c9a1e5b2d4c6f8a0e1b3d5f7a9c2e",
            "deadline": 1800000300,
            "amount": "12.50",
            "currency": "USDC",
        }
    ).typed_data()

    def ours() -> object:
        return eip712.typed_data_digest(
            payload["domain"], "Action", ACTION_TYPES, payload["message"]
        )

    def baseline() -> object:
        signable = encode_typed_data(full_message=payload)
        return keccak256(b"\x19" + signable.version + signable.header + signable.body)

    if ours() != baseline():
        raise RuntimeError("EIP-712 digests differ")
    return compare_case(
        "eip712_digest",
        repeat(ours),
        {"eth-account encode_typed_data + keccak256": repeat(baseline)},
        rounds=rounds,
        seconds=seconds,
    )


def _contract_check_case(rounds: int, seconds: float) -> dict[str, Any]:
    """The eth_call data of a smart-wallet check: creation code + ABI-encoded arguments."""
    from eth_abi import encode

    from keyproof.chain._check import CREATION_CODE, call_data

    signer, factory, digest = b"\x11" * 20, b"\x22" * 20, b"\x33" * 32
    signature, factory_calldata = b"\x44" * 700, b"\x55" * 68

    def ours() -> object:
        return call_data(
            signer,
            digest,
            signature,
            factory=factory,
            factory_calldata=factory_calldata,
            call_gas=1_500_000,
        )

    def baseline() -> object:
        types = ["address", "bytes32", "bytes", "address", "bytes", "uint256"]
        values = ["0x" + signer.hex(), digest, signature, "0x" + factory.hex()]
        return CREATION_CODE + encode(types, [*values, factory_calldata, 1_500_000])

    if ours() != baseline():
        raise RuntimeError("ABI encodings differ")
    return compare_case(
        "contract_check_call_data",
        repeat(ours),
        {"eth-abi encode": repeat(baseline)},
        rounds=rounds,
        seconds=seconds,
    )
