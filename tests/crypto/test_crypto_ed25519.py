"""Ed25519: RFC 8032 vectors, key policy (small-order, mixed-order, non-canonical)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_core_ed25519_add
from nacl.signing import SigningKey

from keyproof.crypto import ed25519
from keyproof.errors import InvalidAccount, KeyproofError, MalformedSignature, SignatureInvalid

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 §7.1, TEST 1 and TEST 2
RFC8032 = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]

# The eight points of small order, each in the encodings libsodium could be handed.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "0100000000000000000000000000000000000000000000000000000000000080",  # identity, x "negative"
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]


def non_canonical_encodings() -> list[bytes]:
    """Every y in [p, 2^255) with either sign bit."""
    found = []
    for y in range(P, 2**255):
        for sign in (0, 1 << 255):
            found.append((y | sign).to_bytes(32, "little"))
    return found


def keypair(seed: int = 7) -> tuple[SigningKey, bytes]:
    signing = SigningKey(bytes([seed]) * 32)
    return signing, bytes(signing.verify_key)


def refused_key(key: bytes) -> None:
    with pytest.raises(InvalidAccount) as caught:
        ed25519.check_public_key(key)
    assert caught.value.code == "invalid_public_key"


@pytest.mark.parametrize(("key", "message", "signature"), RFC8032)
def test_rfc8032_vectors(key: str, message: str, signature: str) -> None:
    public = ed25519.check_public_key(bytes.fromhex(key))
    ed25519.verify(bytes.fromhex(message), bytes.fromhex(signature), public)


def test_sign_and_verify_with_pynacl() -> None:
    signing, public = keypair()
    message = b"example.com wants you to sign in with your key:"
    ed25519.verify(message, signing.sign(message).signature, public)


def test_tampered_message_refused() -> None:
    signing, public = keypair()
    signature = signing.sign(b"message").signature
    with pytest.raises(SignatureInvalid):
        ed25519.verify(b"messagf", signature, public)


def test_other_key_refused() -> None:
    signing, _ = keypair(7)
    _, other = keypair(8)
    with pytest.raises(SignatureInvalid):
        ed25519.verify(b"message", signing.sign(b"message").signature, other)


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_signature_must_be_64_bytes(length: int) -> None:
    signing, public = keypair()
    signature = (signing.sign(b"m").signature * 2)[:length]
    with pytest.raises(MalformedSignature):
        ed25519.verify(b"m", signature, public)


def test_signed_message_blob_is_not_a_signature() -> None:
    signing, public = keypair()
    with pytest.raises(MalformedSignature):
        ed25519.verify(b"", bytes(signing.sign(b"m")), public)


def test_non_canonical_s_refused() -> None:
    signing, public = keypair()
    signature = signing.sign(b"m").signature
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    with pytest.raises(SignatureInvalid):
        ed25519.verify(b"m", malleated, public)


@pytest.mark.parametrize("key", SMALL_ORDER)
def test_small_order_keys_refused(key: str) -> None:
    refused_key(bytes.fromhex(key))


def test_non_canonical_keys_refused() -> None:
    encodings = non_canonical_encodings()
    assert len(encodings) == 38
    for key in encodings:
        refused_key(key)


def test_mixed_order_key_refused() -> None:
    _, public = keypair()
    mixed = crypto_core_ed25519_add(public, bytes.fromhex(SMALL_ORDER[6]))
    assert mixed != public
    refused_key(mixed)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_key_length(length: int) -> None:
    refused_key((keypair()[1] * 2)[:length])


def test_refused_key_refused_by_verify_too() -> None:
    with pytest.raises(InvalidAccount):
        ed25519.verify(b"m", b"\x00" * 64, bytes.fromhex(SMALL_ORDER[0]))


@settings(deadline=None)
@given(key=st.binary(min_size=32, max_size=32))
def test_check_public_key_raises_only_invalid_account(key: bytes) -> None:
    try:
        assert ed25519.check_public_key(key) == key
    except KeyproofError as error:
        assert isinstance(error, InvalidAccount)


@settings(deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=256))
def test_generated_keys_always_pass(seed: bytes, message: bytes) -> None:
    signing = SigningKey(seed)
    public = ed25519.check_public_key(bytes(signing.verify_key))
    ed25519.verify(message, signing.sign(message).signature, public)
