"""In-process cases: keyproof against what a user would otherwise pick, same inputs.

Every keyproof side does all of its checks; a baseline does what its library does by
default, with the checks a careful user adds (named in the baseline). Each case checks
once, before timing, that every side accepts the input, so no side times a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import coincurve
import jwt
from eth_account import Account
from eth_account.messages import encode_defunct
from jwt.algorithms import OKPAlgorithm
from nacl.signing import VerifyKey
from starlette.requests import Request

from benchmarks.apps import AUDIENCE, ISSUER, JwtBackend
from benchmarks.fixtures import jwks_client, mint_token, signed_challenges
from keyproof.accounts import family_for_message
from keyproof.crypto.encoding import decode_base64url
from keyproof.crypto.secp256k1 import keccak256
from keyproof.guard import KeyproofBackend
from keyproof.messages import siwe
from keyproof.tokens import verify_access_token

Case = Callable[[int, float], dict[str, Any]]
NONCE = "0123456789abcdef"
NOW = datetime(2026, 11, 29, 12, 1, tzinfo=UTC)


def _keccaks() -> dict[str, Callable[[bytes], bytes]]:
    """The Keccak-256 implementations on PyPI, each as bytes -> digest."""
    import sha3
    from Crypto.Hash import keccak as cryptodome
    from eth_hash.auto import keccak as eth_hash

    return {
        "safe-pysha3 keccak_256": lambda data: sha3.keccak_256(data).digest(),
        "pycryptodome keccak": lambda d: cryptodome.new(digest_bits=256, data=d).digest(),
        "eth-hash auto": eth_hash,
    }


def keccak_case(rounds: int, seconds: float) -> dict[str, Any]:
    from benchmarks.harness import compare_case, repeat

    data = siwe_fixture()[0].encode()
    others = _keccaks()
    if any(f(data) != keccak256(data) for f in others.values()):
        raise RuntimeError("keccak digests differ")
    baselines = {name: repeat(lambda f=f: f(data)) for name, f in others.items()}
    result = compare_case(
        "keccak256_330B",
        repeat(lambda: keccak256(data)),
        baselines,
        rounds=rounds,
        seconds=seconds,
        note="keyproof's keccak256 against each Keccak-256 on PyPI; the fastest is the floor's",
    )
    fastest = min(result["baselines"], key=lambda row: row["us"])
    result["fastest"] = fastest["name"]
    return result


def siwe_fixture() -> tuple[str, str, str]:
    wallet = Account.create()
    text = siwe.SiweMessage(
        domain="example.com",
        address=wallet.address,
        statement="Sign in.",
        uri="https://example.com",
        chain_id=1,
        nonce=NONCE,
        issued_at="2026-11-29T12:00:00Z",
        expiration_time="2026-11-29T12:05:00Z",
    ).to_text()
    signature = "0x" + bytes(wallet.sign_message(encode_defunct(text=text)).signature).hex()
    return text, signature, wallet.address


def floor_verify(keccak: Callable[[bytes], bytes]) -> Callable[[str, str, bytes], bool]:
    """EIP-191 recover with coincurve and the fastest C keccak, then compare: no parsing."""

    def verify(text: str, signature: str, address: bytes) -> bool:
        data = text.encode()
        digest = keccak(b"\x19Ethereum Signed Message:\n%d" % len(data) + data)
        raw = bytes.fromhex(signature[2:])
        recoverable = raw[:64] + bytes([raw[64] - 27])
        public = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
        return keccak(public.format(compressed=False)[1:])[12:] == address

    return verify


def siwe_case(rounds: int, seconds: float, fastest_keccak: str) -> dict[str, Any]:
    with warnings.catch_warnings():  # its grammar redefines RFC 5234's core rules
        warnings.simplefilter("ignore")
        from siwe import SiweMessage as SiwePy

    from benchmarks.harness import compare_case, repeat

    text, signature, address = siwe_fixture()
    raw_address = bytes.fromhex(address[2:])
    floor = floor_verify(_keccaks()[fastest_keccak])
    message = encode_defunct(text=text)

    def ours() -> object:
        return siwe.verify(text, signature, domain="example.com", nonce=NONCE, now=NOW)

    def siwe_py(abnf: bool) -> Callable[[], object]:
        def run() -> None:
            parsed = SiwePy.from_message(message=text, abnf=abnf)
            parsed.verify(signature, domain="example.com", nonce=NONCE, timestamp=NOW)

        return run

    def eth_account() -> bool:
        return bool(Account.recover_message(message, signature=signature) == address)

    for side in (ours, siwe_py(True), siwe_py(False)):
        side()
    if not (eth_account() and floor(text, signature, raw_address)):
        raise RuntimeError("a SIWE baseline refused the signature")
    return compare_case(
        "siwe_parse_verify",
        repeat(ours),
        {
            "siwe-py (ABNF, its default)": repeat(siwe_py(True)),
            "siwe-py regex": repeat(siwe_py(False)),
            "eth-account recover_message + compare (no parsing)": repeat(eth_account),
            f"floor: coincurve recover + {fastest_keccak} + compare": repeat(
                lambda: floor(text, signature, raw_address)
            ),
        },
        rounds=rounds,
        seconds=seconds,
    )


def ed25519_cases(rounds: int, seconds: float) -> list[dict[str, Any]]:
    """SIWS and did:key sign-ins (parse + verify) against pynacl's verify of the bytes."""
    from benchmarks.harness import compare_case, repeat

    results = []
    for name, (text, signature, public, raw) in signed_challenges().items():
        family = family_for_message(text)
        data = text.encode()
        key = VerifyKey(public)

        def ours(family: Any = family, text: str = text, signature: str = signature) -> None:
            _signed, account = family.parse(text)
            family.verify(account, text.encode(), signature)

        ours()
        key.verify(data, raw)
        results.append(
            compare_case(
                f"{name}_parse_verify",
                repeat(ours),
                {"pynacl VerifyKey.verify": repeat(lambda k=key, d=data, r=raw: k.verify(d, r))},
                rounds=rounds,
                seconds=seconds,
            )
        )
    return results


def _async_batch(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Any]
) -> Callable[[int], object]:
    async def many(n: int) -> None:
        for _ in range(n):
            await call()

    return lambda n: loop.run_until_complete(many(n))


def _signing_parts(token: str) -> tuple[bytes, bytes]:
    head, payload, signature = token.split(".")
    return f"{head}.{payload}".encode(), decode_base64url(signature, length=64)


def guard_case(rounds: int, seconds: float) -> dict[str, Any]:
    """keyproof.guard's per-request work against a minimal PyJWT backend, same request."""
    from benchmarks.harness import compare_case, repeat

    token, keys = mint_token()
    public_raw = next(iter(keys.values()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/profile",
        "raw_path": b"/profile",
        "query_string": b"",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode())],
    }
    loop = asyncio.new_event_loop()
    backend = KeyproofBackend(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{ISSUER}/jwks", http_client=jwks_client(keys)
    )
    pyjwt_backend = JwtBackend(public_raw)
    signing_input, signature = _signing_parts(token)
    nacl_key = VerifyKey(public_raw)
    try:
        for side in (backend, pyjwt_backend):
            if loop.run_until_complete(side.authenticate(Request(scope))) is None:
                raise RuntimeError(f"{side!r} refused the token")
        nacl_key.verify(signing_input, signature)
        return compare_case(
            "guard_authenticate",
            _async_batch(loop, lambda: backend.authenticate(Request(scope))),
            {
                "minimal PyJWT backend (decode + claims)": _async_batch(
                    loop, lambda: pyjwt_backend.authenticate(Request(scope))
                ),
                "pynacl VerifyKey.verify of the same bytes": repeat(
                    lambda: nacl_key.verify(signing_input, signature)
                ),
            },
            rounds=rounds,
            seconds=seconds,
            note="per request, JWKS cached: header read, token parsed and verified, claims",
        )
    finally:
        loop.run_until_complete(backend.aclose())
        loop.close()


def token_case(rounds: int, seconds: float) -> dict[str, Any]:
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import OKPKey

    from benchmarks.harness import compare_case, repeat

    with contextlib.suppress(ValueError):  # PyJWT knows RFC 9864's name once registered
        jwt.register_algorithm("Ed25519", OKPAlgorithm())
    token, keys = mint_token()
    public = {kid: _okp(raw) for kid, raw in keys.items()}
    _kid, jwk = next(iter(public.items()))
    pyjwt_key = OKPAlgorithm.from_jwk(jwk)
    jose_key = OKPKey.import_key(jwk)
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        exp={"essential": True},
    )
    required = ["exp", "iat", "iss", "aud", "sub"]
    verifier_keys = _verifier_keys(keys)

    def ours() -> object:
        return verify_access_token(
            token, keys=verifier_keys, issuer=ISSUER, audience=AUDIENCE, now=int(time.time())
        )

    def joserfc() -> None:
        registry.validate(jose_jwt.decode(token, jose_key, algorithms=["Ed25519"]).claims)

    def pyjwt() -> object:
        return jwt.decode(
            token,
            pyjwt_key,
            algorithms=["Ed25519"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": required},
        )

    for side in (ours, joserfc, pyjwt):
        side()
    return compare_case(
        "access_token_verify",
        repeat(ours),
        {"joserfc decode + claims": repeat(joserfc), "PyJWT decode + claims": repeat(pyjwt)},
        rounds=rounds,
        seconds=seconds,
    )


def _okp(raw: bytes) -> dict[str, str]:
    from keyproof.crypto.encoding import encode_base64url

    return {"kty": "OKP", "crv": "Ed25519", "x": encode_base64url(raw)}


def _verifier_keys(keys: dict[str, bytes]) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return {kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in keys.items()}


def run_all(rounds: int, seconds: float) -> list[dict[str, Any]]:
    from benchmarks.extras import extra_cases

    keccak = keccak_case(rounds, seconds)
    return [
        siwe_case(rounds, seconds, keccak["fastest"]),
        keccak,
        *ed25519_cases(rounds, seconds),
        guard_case(rounds, seconds),
        token_case(rounds, seconds),
        *extra_cases(rounds, seconds),
    ]
