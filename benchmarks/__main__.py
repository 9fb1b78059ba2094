"""Measure keyproof against well-known baselines in the same process; print JSON.

Each case times keyproof's implementation and a baseline doing the same job, with the
same inputs, interleaved, and reports the median per-call time of each and their ratio
(baseline / keyproof: above 1 means keyproof is faster). Counts are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from benchmarks.logins import login_cases
from keyproof.actions import ACTION_TYPES, Action
from keyproof.crypto import eip712
from keyproof.crypto.secp256k1 import decode_signature_hex, keccak256, recover_eip191
from keyproof.messages import siwe
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.server.minting import mint_access_token
from keyproof.stores.memory import MemoryStore
from keyproof.tokens import verify_access_token


def _median_seconds(function: Callable[[], object], calls: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def compare(
    name: str,
    ours: Callable[[], object],
    baseline: Callable[[], object],
    baseline_name: str,
    calls: int,
    rounds: int,
) -> dict[str, Any]:
    ours_s = _median_seconds(ours, calls, rounds)
    base_s = _median_seconds(baseline, calls, rounds)
    return {
        "case": name,
        "keyproof_us": round(ours_s * 1e6, 2),
        "baseline": baseline_name,
        "baseline_us": round(base_s * 1e6, 2),
        "speedup": round(base_s / ours_s, 2),
    }


def _signed_message() -> tuple[str, str, Any]:
    wallet = Account.create()
    text = siwe.SiweMessage(
        domain="example.com",
        address=wallet.address,
        statement="Sign in.",
        uri="https://example.com",
        chain_id=1,
        nonce="0123456789abcdef",
        issued_at="2026-11-29T12:00:00Z",
        expiration_time="2026-11-29T12:05:00Z",
    ).to_text()
    signature = "0x" + bytes(wallet.sign_message(encode_defunct(text=text)).signature).hex()
    return text, signature, wallet


def cases(calls: int, rounds: int) -> list[dict[str, Any]]:
    text, signature, _ = _signed_message()
    raw = decode_signature_hex(signature)
    data = text.encode()
    from eth_hash.auto import keccak as eth_keccak

    results = [
        compare(
            "keccak256",
            lambda: keccak256(data),
            lambda: eth_keccak(data),
            "eth_hash.auto.keccak",
            calls,
            rounds,
        ),
        compare(
            "eip191_recover",
            lambda: recover_eip191(data, raw),
            lambda: Account.recover_message(encode_defunct(text=text), signature=signature),
            "eth_account.Account.recover_message",
            calls,
            rounds,
        ),
    ]
    results.append(_eip712_case(calls, rounds))
    results.append(_contract_check_case(calls, rounds))
    results.append(_token_case(calls, rounds))
    results.append(_redeem_case(max(calls // 4, 1)))
    results.append(_personal_sign_case(text, calls, rounds))
    results.append(_dpop_proof_case(calls, rounds))
    return results


def _dpop_proof_case(calls: int, rounds: int) -> dict[str, Any]:
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

    return compare("client_dpop_proof", ours, baseline, "pyjwt.encode ES256", calls, rounds)


def _personal_sign_case(text: str, calls: int, rounds: int) -> dict[str, Any]:
    """keyproof-client's EIP-191 signing (coincurve) against eth-account's, same key."""
    from keyproof_client import generate_key

    key = generate_key("ethereum")
    wallet = Account.from_key(key.secret_text())

    def baseline() -> str:
        return "0x" + bytes(wallet.sign_message(encode_defunct(text=text)).signature).hex()

    if key.sign(text) != baseline():  # both RFC 6979: the same bytes
        raise RuntimeError("personal_sign signatures differ")
    return compare(
        "client_personal_sign",
        lambda: key.sign(text),
        baseline,
        "eth_account.Account.sign_message",
        calls,
        rounds,
    )


def _eip712_case(calls: int, rounds: int) -> dict[str, Any]:
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
    return compare(
        "eip712_digest",
        ours,
        baseline,
        "eth_account.messages.encode_typed_data + keccak256",
        calls,
        rounds,
    )


def _contract_check_case(calls: int, rounds: int) -> dict[str, Any]:
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
    return compare("contract_check_call_data", ours, baseline, "eth_abi.encode", calls, rounds)


def _token_case(calls: int, rounds: int) -> dict[str, Any]:
    import contextlib

    import jwt
    from jwt.algorithms import OKPAlgorithm

    with contextlib.suppress(ValueError):  # PyJWT knows RFC 9864's name once registered
        jwt.register_algorithm("Ed25519", OKPAlgorithm())

    keys = KeySet([SigningKey.generate(int(time.time()))])
    now = int(time.time())
    token = mint_access_token(
        keys,
        issuer="https://i",
        subject="s",
        audience="https://a",
        scope="x:y",
        client_id="s",
        lifetime=600,
        now=now,
    ).token
    public = keys.public_keys()
    key = next(iter(public.values()))

    def ours() -> object:
        return verify_access_token(
            token, keys=public, issuer="https://i", audience="https://a", now=now
        )

    def baseline() -> object:
        return jwt.decode(
            token, key, algorithms=["Ed25519"], audience="https://a", issuer="https://i"
        )

    return compare(
        "access_token_verify", ours, baseline, "pyjwt.decode (fewer checks)", calls, rounds
    )


def _redeem_case(logins: int) -> dict[str, Any]:
    """Full challenge + redeem pipeline in-process on the memory store (no baseline)."""
    data_dir = Path(tempfile.mkdtemp(prefix="keyproof-bench-"))
    settings = Settings(store="memory://", data_dir=data_dir)
    service = build_service(
        settings, MemoryStore(), KeySet([SigningKey.generate(int(time.time()))])
    )
    wallet = Account.create()
    account = f"eip155:1:{wallet.address}"

    async def run() -> float:
        signed = []
        for _ in range(logins):
            challenge = await service.challenge(account)
            sig = wallet.sign_message(encode_defunct(text=challenge.message)).signature
            signed.append((challenge.message, "0x" + bytes(sig).hex()))
        start = time.perf_counter()
        for message, sig in signed:
            await service.redeem(message, sig)
        return (time.perf_counter() - start) / logins

    per_call = asyncio.run(run())
    return {
        "case": "redeem_pipeline_memory_store",
        "keyproof_us": round(per_call * 1e6, 2),
        "redeems_per_second": round(1 / per_call),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    calls, rounds = (5, 2) if args.quick else (500, 7)
    logins, skipped = login_cases(*((20, 4, 1) if args.quick else (2000, 16, 3)))
    report = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "calls_per_round": calls,
        "rounds": rounds,
        "results": cases(calls, rounds) + logins,
        "skipped": skipped,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
