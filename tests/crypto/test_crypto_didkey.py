"""did:key: W3C CCG did-method-key test vectors, round trips and strict refusals."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from keyproof.crypto import didkey
from keyproof.crypto.encoding import encode_base58
from keyproof.errors import InvalidAccount, KeyproofError

# w3c-ccg/did-method-key test-vectors/ed25519-x25519.json: did -> (seed, publicKeyBase58)
ED25519_VECTORS = {
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp": (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
    ),
    "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG": (
        "0000000000000000000000000000000000000000000000000000000000000001",
        "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
    ),
    "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf": (
        "0000000000000000000000000000000000000000000000000000000000000002",
        "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH",
    ),
    "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ": (
        "0000000000000000000000000000000000000000000000000000000000000003",
        "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2",
    ),
    "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL": (
        "0000000000000000000000000000000000000000000000000000000000000004",
        "J3qYF7YJMKCqQke47UQwiHizgFUXapHxRxKmxbkar89x",
    ),
}

# w3c-ccg/did-method-key test-vectors/secp256k1.json: did -> (seed, publicKeyBase58)
SECP256K1_VECTORS = {
    "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme": (
        "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c",
        "23o6Sau8NxxzXcgSc3PLcNxrzrZpbLeBn1izfv3jbKhuv",
    ),
    "did:key:zQ3shtxV1FrJfhqE1dvxYRcCknWNjHc3c5X1y3ZSoPDi2aur2": (
        "f0f4df55a2b3ff13051ea814a8f24ad00f2e469af73c363ac7e9fb999a9072ed",
        "291KzQhqCPC18PqH83XKhxv1HdqrdnxyS7dh15t2uNRzJ",
    ),
    "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N": (
        "6b0b91287ae3348f8c2f2552d766f30e3604867e34adc37ccbb74a8e6b893e02",
        "oesQ92MLiAkt2pjBcJFbW7H4DvzKJv22cotjYbmC2JEe",
    ),
    "did:key:zQ3shadCps5JLAHcZiuX5YUtWHHL8ysBJqFLWvjZDKAWUBGzy": (
        "c0a6a7c560d37d7ba81ecee9543721ff48fea3e0fb827d42c1868226540fac15",
        "pg3p1vprqePgUoqfAQ1TTgxhL6zLYhHyzooR1pqLxo9F",
    ),
    "did:key:zQ3shptjE6JwdkeKN4fcpnYQY3m9Cet3NiHdAfpvSUZBFoKBj": (
        "175a232d440be1e0788f25488a73d9416c04b6f924bea6354bf05dd2f1a75133",
        "24waDFAUAS16UpZwQQTXVEAmm17rQRjadjuAeBDW8aqL1",
    ),
}

P256_DID = "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169"  # spec, P-256 example
X25519_DID = "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW"  # keyAgreement above
SMALL_ORDER_ED25519 = bytes.fromhex(
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
)


def secp_public(seed: str, *, compressed: bool = True) -> bytes:
    public: bytes = PrivateKey(bytes.fromhex(seed)).public_key.format(compressed=compressed)
    return public


def refused(did: str, code: str) -> None:
    with pytest.raises(InvalidAccount) as caught:
        didkey.decode_did_key(did)
    assert caught.value.code == code


@pytest.mark.parametrize("did", sorted(ED25519_VECTORS))
def test_ed25519_spec_vectors(did: str) -> None:
    seed, public_base58 = ED25519_VECTORS[did]
    public = bytes(SigningKey(bytes.fromhex(seed)).verify_key)
    assert encode_base58(public) == public_base58
    assert didkey.encode_did_key("ed25519", public) == did
    assert didkey.decode_did_key(did) == ("ed25519", public)
    assert did.startswith("did:key:z6Mk")


@pytest.mark.parametrize("did", sorted(SECP256K1_VECTORS))
def test_secp256k1_spec_vectors(did: str) -> None:
    seed, public_base58 = SECP256K1_VECTORS[did]
    public = secp_public(seed)
    assert encode_base58(public) == public_base58
    assert didkey.encode_did_key("secp256k1", public) == did
    assert didkey.decode_did_key(did) == ("secp256k1", public)
    assert did.startswith("did:key:zQ3s")


def test_secp256k1_uncompressed_input_is_compressed_in_the_did() -> None:
    did, (seed, _) = next(iter(SECP256K1_VECTORS.items()))
    assert didkey.encode_did_key("secp256k1", secp_public(seed, compressed=False)) == did


def test_secp256k1_did_holding_uncompressed_key_refused() -> None:
    seed = next(iter(SECP256K1_VECTORS.values()))[0]
    did = "did:key:z" + encode_base58(b"\xe7\x01" + secp_public(seed, compressed=False))
    refused(did, "invalid_account")


def test_small_order_ed25519_did_refused() -> None:
    refused("did:key:z" + encode_base58(b"\xed\x01" + SMALL_ORDER_ED25519), "invalid_public_key")
    with pytest.raises(InvalidAccount):
        didkey.encode_did_key("ed25519", SMALL_ORDER_ED25519)


def test_off_curve_secp256k1_did_refused() -> None:
    refused("did:key:z" + encode_base58(b"\xe7\x01\x02" + b"\xff" * 32), "invalid_public_key")


@pytest.mark.parametrize("did", [P256_DID, X25519_DID])
def test_other_key_types_unsupported(did: str) -> None:
    refused(did, "unsupported_account")


def test_encode_unknown_kind_refused() -> None:
    with pytest.raises(InvalidAccount):
        didkey.encode_did_key("p256", b"\x02" * 33)  # type: ignore[arg-type]


VALID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


@pytest.mark.parametrize(
    "did",
    [
        "",
        "did:key:",
        "did:key:z",
        "did:key:z6Mk",  # truncated payload
        VALID[:-1],
        VALID + "a",
        VALID + "\n",
        " " + VALID,
        VALID.replace("did:key:", "DID:KEY:"),
        VALID.replace("did:key:", "did:web:"),
        VALID.replace(":z", ":Z"),
        VALID.replace(":z", ":1z"),
        "did:key:z1" + VALID[len("did:key:z") :],  # extra leading zero byte
        VALID.replace("p", "0"),
        "did:key:f" + (b"\xed\x01" + b"\x01" * 32).hex(),  # base16 multibase
        VALID + "#" + VALID[len("did:key:") :],  # a DID URL, not a DID
        "did:key:z" + "2" * 1000,
        "did:key:z" + encode_base58(b"\xed\x01" + b"\x01" * 31),
        "did:key:z" + encode_base58(b"\xed\x01" + b"\x01" * 33),
    ],
)
def test_malformed_dids_refused(did: str) -> None:
    refused(did, "invalid_account")


@settings(deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_ed25519_round_trip(seed: bytes) -> None:
    public = bytes(SigningKey(seed).verify_key)
    did = didkey.encode_did_key("ed25519", public)
    assert did.startswith("did:key:z6Mk")
    assert didkey.decode_did_key(did) == ("ed25519", public)


@settings(deadline=None)
@given(secret=st.integers(min_value=1, max_value=2**256 - 2**129))
def test_secp256k1_round_trip(secret: int) -> None:
    public = PrivateKey(secret.to_bytes(32, "big")).public_key.format()
    did = didkey.encode_did_key("secp256k1", public)
    assert did.startswith("did:key:zQ3s")
    assert didkey.decode_did_key(did) == ("secp256k1", public)


@settings(deadline=None)
@given(text=st.text(max_size=200))
def test_decode_raises_only_invalid_account_on_any_text(text: str) -> None:
    for candidate in (text, "did:key:z" + text):
        try:
            didkey.decode_did_key(candidate)
        except KeyproofError as error:
            assert isinstance(error, InvalidAccount)


@settings(deadline=None)
@given(payload=st.binary(max_size=80))
def test_decode_raises_only_invalid_account_on_any_payload(payload: bytes) -> None:
    for prefix in (b"", b"\xed\x01", b"\xe7\x01"):
        try:
            kind, key = didkey.decode_did_key("did:key:z" + encode_base58(prefix + payload))
        except KeyproofError as error:
            assert isinstance(error, InvalidAccount)
        else:
            assert didkey.encode_did_key(kind, key) == "did:key:z" + encode_base58(prefix + payload)
