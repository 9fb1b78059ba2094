"""Signature primitives: strict encodings, secp256k1 (EIP-191, EIP-712, did:key ECDSA),
Ed25519 and did:key identifiers.

Each verifier raises; none returns a bool. Formats and lengths are pinned by the
caller's account type, never by the signature itself.
"""

from keyproof.crypto import didkey, ed25519, eip712, encoding, secp256k1

__all__ = ["didkey", "ed25519", "eip712", "encoding", "secp256k1"]
