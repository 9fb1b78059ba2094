"""Inputs of the in-process cases: a minted token, its JWKS, signed ed25519 challenges."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import base58
import httpx
from nacl.signing import SigningKey as NaclKey

from benchmarks.apps import AUDIENCE, ISSUER, SCOPE
from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base64url
from keyproof.server.components import build_service
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet, SigningKey
from keyproof.server.minting import mint_access_token
from keyproof.stores.memory import MemoryStore

SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"


def _keys() -> KeySet:
    return KeySet([SigningKey.generate(int(time.time()))])


def mint_token() -> tuple[str, dict[str, bytes]]:
    """An access token for ``SCOPE``, and the raw public key of each kid."""
    keys = _keys()
    token = mint_access_token(
        keys,
        issuer=ISSUER,
        subject="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        audience=AUDIENCE,
        scope=SCOPE,
        client_id="bench",
        lifetime=3600,
        now=int(time.time()),
    ).token
    return token, {kid: key.public_bytes_raw() for kid, key in keys.public_keys().items()}


def jwks_client(keys: dict[str, bytes]) -> httpx.AsyncClient:
    """An HTTP client whose issuer answers the JWKS: fetched once, then cached by the guard."""
    document = {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": encode_base64url(raw), "kid": kid, "use": "sig"}
            for kid, raw in keys.items()
        ]
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=document, headers={"cache-control": "max-age=3600"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def signed_challenges() -> dict[str, tuple[str, str, bytes, bytes]]:
    """Real challenges from the issuer pipeline, signed: text, signature, key, raw signature."""
    agent = NaclKey.generate()
    public = bytes(agent.verify_key)
    settings = Settings(store="memory://", data_dir=Path(tempfile.mkdtemp(prefix="kp-bench-")))
    service = build_service(settings, MemoryStore(), _keys())
    accounts = {
        "siws": (f"{SOLANA_MAINNET}:{base58.b58encode(public).decode()}", base58.b58encode),
        "didkey_ed25519": (encode_did_key("ed25519", public), encode_base64url),
    }

    async def issue() -> dict[str, tuple[str, str, bytes, bytes]]:
        signed = {}
        for name, (account, encode) in accounts.items():
            text = (await service.challenge(account)).message
            raw = agent.sign(text.encode()).signature
            encoded = encode(raw)
            signed[name] = (
                text,
                encoded if isinstance(encoded, str) else encoded.decode(),
                public,
                raw,
            )
        return signed

    return asyncio.run(issue())
