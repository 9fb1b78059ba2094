"""secp256k1: EIP-191 personal_sign recovery, EIP-55, SEC1 keys, did:key ECDSA."""

from __future__ import annotations

import hashlib

import pytest
from coincurve import PrivateKey, PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproof.crypto import secp256k1
from keyproof.errors import InvalidAccount, KeyproofError, MalformedSignature, SignatureInvalid

N = secp256k1.CURVE_ORDER
P = 2**256 - 2**32 - 977
MESSAGE = b"example.com wants you to sign in with your Ethereum account:\n0xabc"
SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER_SECRET = bytes.fromhex("11" * 32)


def personal_sign(secret: bytes, message: bytes) -> bytes:
    signed = Account.from_key(secret).sign_message(encode_defunct(primitive=message))
    return bytes(signed.signature)


def address_of(secret: bytes) -> bytes:
    return bytes.fromhex(Account.from_key(secret).address[2:])


def high_s_twin(signature: bytes) -> bytes:
    s, v = int.from_bytes(signature[32:64], "big"), signature[64]
    flipped = v ^ 1 if v < 27 else 55 - v  # 0 <-> 1, 27 <-> 28
    return signature[:32] + (N - s).to_bytes(32, "big") + bytes([flipped])


# --- Keccak / EIP-55 -------------------------------------------------------------


def test_keccak256_is_not_sha3() -> None:
    assert secp256k1.keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


@pytest.mark.parametrize(
    "spelled",
    [  # the examples of EIP-55
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_examples(spelled: str) -> None:
    assert secp256k1.checksum_address(bytes.fromhex(spelled[2:])) == spelled


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_checksum_address_needs_20_bytes(length: int) -> None:
    with pytest.raises(InvalidAccount):
        secp256k1.checksum_address(b"\x01" * length)


# --- public keys -------------------------------------------------------------------


def key_forms(secret: bytes) -> dict[str, bytes]:
    public = PublicKey.from_secret(secret)
    uncompressed = public.format(compressed=False)
    odd = uncompressed[-1] & 1
    return {
        "compressed": public.format(compressed=True),
        "uncompressed": uncompressed,
        "hybrid": bytes([6 + odd]) + uncompressed[1:],
        "hybrid_wrong_parity": bytes([7 - odd]) + uncompressed[1:],
    }


def test_address_of_private_key_one() -> None:
    key = PublicKey.from_secret((1).to_bytes(32, "big")).format()
    address = secp256k1.address_from_public_key(key)
    assert secp256k1.checksum_address(address) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


@pytest.mark.parametrize("form", ["compressed", "uncompressed", "hybrid"])
def test_every_sec1_form_canonicalizes_to_compressed(form: str) -> None:
    forms = key_forms(SECRET)
    assert secp256k1.canonical_public_key(forms[form]) == forms["compressed"]
    assert secp256k1.address_from_public_key(forms[form]) == address_of(SECRET)


def invalid_keys() -> dict[str, bytes]:
    forms = key_forms(SECRET)
    off_curve = bytearray(forms["uncompressed"])
    off_curve[-1] ^= 1
    return {
        "hybrid_wrong_parity": forms["hybrid_wrong_parity"],
        "off_curve": bytes(off_curve),
        "x_not_on_curve": b"\x02" + (5).to_bytes(32, "big"),
        "x_equals_p": b"\x02" + P.to_bytes(32, "big"),
        "x_above_p": b"\x02" + b"\xff" * 32,
        "y_above_p": b"\x04" + forms["uncompressed"][1:33] + b"\xff" * 32,
        "infinity": b"\x00",
        "empty": b"",
        "compressed_prefix_04": b"\x04" + forms["compressed"][1:],
        "uncompressed_prefix_02": b"\x02" + forms["uncompressed"][1:],
        "prefix_05": b"\x05" + forms["uncompressed"][1:],
        "truncated": forms["compressed"][:-1],
        "extended": forms["compressed"] + b"\x00",
        "raw_xy_64": forms["uncompressed"][1:],
    }


@pytest.mark.parametrize("name", sorted(invalid_keys()))
def test_invalid_public_keys_refused(name: str) -> None:
    with pytest.raises(InvalidAccount) as caught:
        secp256k1.canonical_public_key(invalid_keys()[name])
    assert caught.value.code == "invalid_public_key"


def test_x_not_on_curve_really_is_not() -> None:
    y_squared = (5**3 + 7) % P
    assert pow(y_squared, (P - 1) // 2, P) != 1


# --- EIP-191 -----------------------------------------------------------------------


def test_recover_personal_sign_from_eth_account() -> None:
    signature = personal_sign(SECRET, MESSAGE)
    assert signature[64] in (27, 28)
    assert secp256k1.recover_eip191(MESSAGE, signature) == address_of(SECRET)
    secp256k1.verify_eip191(MESSAGE, signature, address_of(SECRET))


def test_decode_signature_hex_of_eth_account_output() -> None:
    signed = Account.from_key(SECRET).sign_message(encode_defunct(primitive=MESSAGE))
    text = "0x" + bytes(signed.signature).hex()
    assert secp256k1.decode_signature_hex(text) == bytes(signed.signature)
    assert secp256k1.decode_signature_hex(text.upper().replace("0X", "0x")) == bytes(
        signed.signature
    )


def test_v_zero_one_and_27_28_both_accepted() -> None:
    signature = personal_sign(SECRET, MESSAGE)
    raw_v = signature[:64] + bytes([signature[64] - 27])
    assert secp256k1.recover_eip191(MESSAGE, raw_v) == address_of(SECRET)


@pytest.mark.parametrize("v", [2, 3, 26, 29, 35, 36, 37, 38, 255])
def test_other_recovery_ids_refused(v: int) -> None:
    signature = personal_sign(SECRET, MESSAGE)[:64] + bytes([v])
    with pytest.raises(MalformedSignature):
        secp256k1.recover_eip191(MESSAGE, signature)


@pytest.mark.parametrize("length", [0, 64, 66, 130])
def test_wrong_signature_length_refused(length: int) -> None:
    signature = (personal_sign(SECRET, MESSAGE) * 2)[:length]
    with pytest.raises(MalformedSignature):
        secp256k1.recover_eip191(MESSAGE, signature)


@pytest.mark.parametrize(
    "text",
    [
        "0x" + "ab" * 64,
        "0x" + "ab" * 66,
        "ab" * 65,
        "0x" + "ab" * 64 + "zz",
        "0x" + "ab" * 64 + " a",
        "0x " + "ab" * 64 + "a",
        "",
    ],
)
def test_decode_signature_hex_refusals(text: str) -> None:
    with pytest.raises(MalformedSignature):
        secp256k1.decode_signature_hex(text)


def test_high_s_malleability_twin_refused() -> None:
    signature = personal_sign(SECRET, MESSAGE)
    twin = high_s_twin(signature)
    recid_twin = twin[:64] + bytes([twin[64] - 27])
    digest = secp256k1.eip191_digest(MESSAGE)
    # libsecp256k1 recovers the same key from the twin: only our explicit check refuses it.
    recovered = PublicKey.from_signature_and_message(recid_twin, digest, hasher=None)
    assert recovered.format() == PublicKey.from_secret(SECRET).format()
    with pytest.raises(SignatureInvalid):
        secp256k1.recover_eip191(MESSAGE, twin)
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_eip191(MESSAGE, twin, address_of(SECRET))


def test_signature_by_another_key_is_a_mismatch() -> None:
    signature = personal_sign(OTHER_SECRET, MESSAGE)
    assert secp256k1.recover_eip191(MESSAGE, signature) == address_of(OTHER_SECRET)
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_eip191(MESSAGE, signature, address_of(SECRET))


def test_tampered_message_is_a_mismatch() -> None:
    signature = personal_sign(SECRET, MESSAGE)
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_eip191(MESSAGE + b" ", signature, address_of(SECRET))


def test_message_length_is_part_of_the_envelope() -> None:
    prefixed = b"\x19Ethereum Signed Message:\n" + str(len(MESSAGE)).encode() + MESSAGE
    assert secp256k1.eip191_digest(MESSAGE) == secp256k1.keccak256(prefixed)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (N, 1), (1, N), (2**256 - 1, 1), (1, N // 2 + 1)],
)
def test_out_of_range_scalars_refused(r: int, s: int) -> None:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + b"\x1b"
    with pytest.raises(SignatureInvalid):
        secp256k1.recover_eip191(MESSAGE, signature)


def test_unrecoverable_r_is_signature_invalid() -> None:
    outcomes = set()
    for r in range(1, 40):
        signature = r.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"
        try:
            secp256k1.recover_eip191(MESSAGE, signature)
            outcomes.add("recovered")
        except SignatureInvalid:
            outcomes.add("refused")
    assert outcomes == {"recovered", "refused"}


@settings(deadline=None)
@given(signature=st.binary(min_size=65, max_size=65), message=st.binary(max_size=64))
def test_recover_raises_only_keyproof_errors(signature: bytes, message: bytes) -> None:
    try:
        assert len(secp256k1.recover_eip191(message, signature)) == 20
    except KeyproofError as error:
        assert isinstance(error, MalformedSignature | SignatureInvalid)


# --- did:key ECDSA over SHA-256 (P1363) -------------------------------------------


def p1363_sign(secret: bytes, message: bytes) -> bytes:
    recoverable = PrivateKey(secret).sign_recoverable(hashlib.sha256(message).digest(), hasher=None)
    return recoverable[:64]


def test_sha256_ecdsa_round_trip_with_any_key_form() -> None:
    signature = p1363_sign(SECRET, MESSAGE)
    for form in ("compressed", "uncompressed"):
        secp256k1.verify_sha256_ecdsa(MESSAGE, signature, key_forms(SECRET)[form])


def test_sha256_ecdsa_high_s_twin_refused() -> None:
    signature = p1363_sign(SECRET, MESSAGE)
    twin = high_s_twin(signature + b"\x00")[:64]
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_sha256_ecdsa(MESSAGE, twin, key_forms(SECRET)["compressed"])


def test_sha256_ecdsa_wrong_key_or_message_refused() -> None:
    signature = p1363_sign(SECRET, MESSAGE)
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_sha256_ecdsa(MESSAGE, signature, key_forms(OTHER_SECRET)["compressed"])
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_sha256_ecdsa(MESSAGE[:-1], signature, key_forms(SECRET)["compressed"])


def test_sha256_ecdsa_is_not_keccak() -> None:
    digest = secp256k1.keccak256(MESSAGE)
    signature = PrivateKey(SECRET).sign_recoverable(digest, hasher=None)[:64]
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_sha256_ecdsa(MESSAGE, signature, key_forms(SECRET)["compressed"])


@pytest.mark.parametrize("length", [0, 63, 65, 70, 72])
def test_sha256_ecdsa_needs_64_bytes(length: int) -> None:
    signature = (p1363_sign(SECRET, MESSAGE) * 2)[:length]
    with pytest.raises(MalformedSignature):
        secp256k1.verify_sha256_ecdsa(MESSAGE, signature, key_forms(SECRET)["compressed"])


def test_sha256_ecdsa_invalid_key_refused() -> None:
    signature = p1363_sign(SECRET, MESSAGE)
    with pytest.raises(InvalidAccount):
        secp256k1.verify_sha256_ecdsa(MESSAGE, signature, invalid_keys()["off_curve"])


def test_verify_digest_needs_32_byte_digest() -> None:
    signature = p1363_sign(SECRET, MESSAGE)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    digest = hashlib.sha256(MESSAGE).digest()
    secp256k1.verify_digest(digest, r, s, key_forms(SECRET)["compressed"])
    with pytest.raises(SignatureInvalid):
        secp256k1.verify_digest(digest + b"\x00", r, s, key_forms(SECRET)["compressed"])
