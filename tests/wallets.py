"""Real local-key wallets that sign the way browser wallets and agents do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct


@dataclass
class EthWallet:
    """An Ethereum EOA signing with ``personal_sign`` (EIP-191)."""

    account: Account

    @classmethod
    def create(cls) -> EthWallet:
        return cls(Account.create())

    @property
    def address(self) -> str:
        return str(self.account.address)

    def caip10(self, chain: int = 1) -> str:
        return f"eip155:{chain}:{self.address}"

    def sign(self, text: str) -> str:
        signed = self.account.sign_message(encode_defunct(text=text))
        return "0x" + bytes(signed.signature).hex()

    def sign_typed_data(self, payload: dict[str, Any]) -> str:
        """``eth_signTypedData_v4`` of a full EIP-712 payload (types, domain, message)."""
        signed = self.account.sign_typed_data(full_message=payload)
        return "0x" + bytes(signed.signature).hex()


# --- Solana and agent keys --------------------------------------------------------------

import hashlib  # noqa: E402

import base58  # noqa: E402
import coincurve  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from keyproof.crypto.didkey import encode_did_key  # noqa: E402
from keyproof.crypto.encoding import encode_base64url  # noqa: E402

SOLANA_MAINNET = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class SolanaWallet:
    """A Phantom-style wallet: ``signMessage`` is ed25519 over the UTF-8 bytes, base58."""

    key: SigningKey

    @classmethod
    def create(cls, seed: bytes | None = None) -> SolanaWallet:
        return cls(SigningKey(seed) if seed is not None else SigningKey.generate())

    @property
    def address(self) -> str:
        return base58.b58encode(bytes(self.key.verify_key)).decode("ascii")

    def caip10(self, chain: str = SOLANA_MAINNET) -> str:
        return f"solana:{chain}:{self.address}"

    def sign_bytes(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data).signature)

    def sign(self, text: str) -> str:
        return base58.b58encode(self.sign_bytes(text.encode("utf-8"))).decode("ascii")


@dataclass
class AgentEd25519Wallet:
    """An agent holding an ed25519 key: ``did:key:z6Mk…``, raw signature, base64url."""

    key: SigningKey

    @classmethod
    def create(cls, seed: bytes | None = None) -> AgentEd25519Wallet:
        return cls(SigningKey(seed) if seed is not None else SigningKey.generate())

    @property
    def did(self) -> str:
        return encode_did_key("ed25519", bytes(self.key.verify_key))

    def sign_bytes(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data).signature)

    def sign(self, text: str) -> str:
        return encode_base64url(self.sign_bytes(text.encode("utf-8")))


def _der_to_low_s(der: bytes) -> bytes:
    """DER ECDSA signature -> 64-byte r‖s with s in the lower half of the order."""
    r_length = der[3]
    r = int.from_bytes(der[4 : 4 + r_length], "big")
    s_at = 4 + r_length
    s = int.from_bytes(der[s_at + 2 : s_at + 2 + der[s_at + 1]], "big")
    s = min(s, SECP256K1_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class AgentSecp256k1Wallet:
    """An agent holding a secp256k1 key: ``did:key:zQ3s…``, ECDSA over SHA-256, r‖s."""

    key: coincurve.PrivateKey

    @classmethod
    def create(cls, seed: bytes | None = None) -> AgentSecp256k1Wallet:
        return cls(coincurve.PrivateKey(seed) if seed is not None else coincurve.PrivateKey())

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.public_key.format(compressed=True))

    @property
    def did(self) -> str:
        return encode_did_key("secp256k1", self.public_key)

    def sign_bytes(self, data: bytes) -> bytes:
        der = self.key.sign(data, hasher=lambda m: hashlib.sha256(m).digest())
        return _der_to_low_s(der)

    def sign(self, text: str) -> str:
        return encode_base64url(self.sign_bytes(text.encode("utf-8")))


# --- DPoP keys (RFC 9449) ----------------------------------------------------------------


class DPoPKey:
    """A client's DPoP key: ES256 proofs made by PyJWT (as WebCrypto's P-256 would sign),
    Ed25519 proofs with RFC 9864's ``alg`` made by :func:`keyproof.jose.sign_compact`."""

    def __init__(self, alg: str = "ES256") -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from keyproof import jose

        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = Ed25519PrivateKey.generate()
        self.public_jwk = jose.public_jwk(self.private.public_key())
        self.jkt = jose.jwk_thumbprint(self.private.public_key())

    def proof(
        self,
        method: str,
        url: str,
        *,
        now: int,
        token: str | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A fresh proof for ``method url`` at ``now`` (``ath`` of ``token`` if given)."""
        import secrets

        import jwt

        from keyproof import jose
        from keyproof.dpop import access_token_hash

        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(18),
            "htm": method,
            "htu": url,
            "iat": now,
        }
        if token is not None:
            body["ath"] = access_token_hash(token)
        if nonce is not None:
            body["nonce"] = nonce
        body.update(claims)
        fields = {"typ": "dpop+jwt", "jwk": self.public_jwk, **(header or {})}
        if self.alg == "ES256":
            return jwt.encode(body, self.private, algorithm="ES256", headers=fields)
        return jose.sign_compact({"alg": "Ed25519", **fields}, body, self.private)
