"""DPoP at the token endpoint (RFC 9449 §5, §8): proofs and the server's nonces.

A proof sent to ``POST /v1/token`` must be for ``POST`` to the metadata's
``token_endpoint`` (built from the configured issuer, never from ``Host``), carry no
``ath`` (no token is presented), and, when ``dpop_nonce`` is on, the current nonce.

Nonces are stateless: the nonce of a 60-second bucket is an HMAC of the bucket number
under a key derived from each signing key in the key file, so every replica that shares
the file issues and accepts the same nonces without a store. The current and the
previous bucket are accepted, so a nonce stays good for 60 to 120 seconds; a nonce made
with any key in the file is accepted, so a key rotation does not invalidate nonces.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from keyproof._time import Clock
from keyproof.crypto.encoding import encode_base64url
from keyproof.dpop import DPoPProof, ProofReplayCache, verify_proof
from keyproof.errors import DPoPNonceRequired
from keyproof.stores.base import Store

if TYPE_CHECKING:
    from keyproof.server.keys import SigningKey
    from keyproof.server.service import KeySource

__all__ = ["NONCE_BUCKET", "TOKEN_PATH", "DPoPNonces", "TokenEndpointProofs", "token_endpoint"]

TOKEN_PATH: Final = "/v1/token"  # noqa: S105 - a path, not a secret
NONCE_BUCKET: Final = 60
_NONCE_CONTEXT: Final = b"keyproof dpop-nonce v1"


def token_endpoint(issuer: str) -> str:
    """The token endpoint's URL as the metadata publishes it."""
    return issuer.rstrip("/") + TOKEN_PATH


class DPoPNonces:
    """Server-provided DPoP nonces (RFC 9449 §8), or none when ``enabled`` is false."""

    def __init__(self, keys: KeySource, *, enabled: bool, clock: Clock = time.time) -> None:
        self._keys = keys
        self.enabled = enabled
        self._clock = clock

    def current(self) -> str | None:
        """The nonce to hand out now (``DPoP-Nonce``), or None when nonces are off."""
        if not self.enabled:
            return None
        return self._nonce(self._keys.current().signing_key(), self._bucket())

    def check(self, nonce: str | None) -> None:
        """Raise ``use_dpop_nonce`` (with the current nonce) unless ``nonce`` is current."""
        current = self.current()
        if current is None:
            return
        bucket = self._bucket()
        valid = (
            self._nonce(key, b) for key in self._keys.current().keys for b in (bucket, bucket - 1)
        )
        # Bytes: compare_digest refuses str with non-ASCII characters, which a proof may hold.
        given = None if nonce is None else nonce.encode("utf-8", "surrogatepass")
        if given is None or not any(hmac.compare_digest(given, v.encode()) for v in valid):
            raise DPoPNonceRequired(
                "use_dpop_nonce", "resend the DPoP proof with the DPoP-Nonce given", nonce=current
            )

    def _bucket(self) -> int:
        return int(self._clock()) // NONCE_BUCKET

    @staticmethod
    def _nonce(key: SigningKey, bucket: int) -> str:
        seed = key.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        secret = hmac.new(seed, _NONCE_CONTEXT, hashlib.sha256).digest()
        mac = hmac.new(secret, bucket.to_bytes(8, "big", signed=True), hashlib.sha256)
        return encode_base64url(mac.digest()[:18])


class TokenEndpointProofs:
    """Checks the DPoP proof of a token request: stateless checks, nonce, single use."""

    def __init__(
        self, store: Store, nonces: DPoPNonces, *, issuer: str, clock: Clock = time.time
    ) -> None:
        self._replay = ProofReplayCache(store)
        self.nonces = nonces
        self._url = token_endpoint(issuer)
        self._clock = clock

    def verify(self, proof: str | None, *, jkt: str | None) -> DPoPProof:
        """The proof's stateless checks and the nonce; nothing is recorded yet."""
        checked = verify_proof(
            proof,
            method="POST",
            url=self._url,
            now=int(self._clock()),
            access_token=None,
            jkt=jkt,
        )
        self.nonces.check(checked.nonce)
        return checked

    async def use(self, proof: DPoPProof) -> None:
        """Record the proof's ``jti``; ``invalid_dpop_proof`` if it was used before."""
        await self._replay.use(proof, int(self._clock()))
