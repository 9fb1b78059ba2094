"""Strict encodings: one accepted spelling per value, only keyproof errors on bad text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyproof.crypto import encoding
from keyproof.errors import InvalidAccount, KeyproofError, MalformedSignature

Decoder = Callable[..., bytes]

SIGNATURE_DECODERS: list[Decoder] = [
    encoding.decode_hex0x,
    encoding.decode_base58,
    encoding.decode_base64url,
]
KEY_DECODERS: list[Decoder] = [
    encoding.decode_hex0x_key,
    encoding.decode_base58_key,
    encoding.decode_base64url_key,
]
PAIRS = [
    (encoding.encode_hex0x, encoding.decode_hex0x, encoding.decode_hex0x_key),
    (encoding.encode_base58, encoding.decode_base58, encoding.decode_base58_key),
    (encoding.encode_base64url, encoding.decode_base64url, encoding.decode_base64url_key),
]


def refused(decoder: Decoder, text: str, length: int) -> None:
    with pytest.raises(MalformedSignature) as caught:
        decoder(text, length=length)
    assert caught.value.code == "malformed_signature"


def test_hex0x_accepts_either_case() -> None:
    assert encoding.decode_hex0x("0xdeadBEEF", length=4) == bytes.fromhex("deadbeef")
    assert encoding.encode_hex0x(b"\xde\xad") == "0xdead"


@pytest.mark.parametrize(
    "text",
    [
        "deadbeef",  # no prefix
        "0Xdeadbeef",
        "0xdeadbee",  # odd length
        "0xdeadbeef00",  # too long
        "0xdead beef"[:10],
        "0xde adbeef",
        " 0xdeadbeef",
        "0xdeadbeef\n",
        "0x+deadbee",
        "0xdead_eef",
        "0xdeadbeeg",
        "0x\u0661\u0662deadbe",  # Arabic-Indic digits
        "0x\uff44eadbeef",  # fullwidth d
        "",
    ],
)
def test_hex0x_refusals(text: str) -> None:
    refused(encoding.decode_hex0x, text, 4)


def test_base58_round_trip_with_leading_zeros() -> None:
    data = b"\x00\x00\x01\xff"
    text = encoding.encode_base58(data)
    assert text.startswith("11")
    assert encoding.decode_base58(text, length=4) == data


@pytest.mark.parametrize(
    "text",
    [
        "1" + encoding.encode_base58(b"\x01" * 4),  # extra leading 1: a 5-byte value
        encoding.encode_base58(b"\x01" * 4)[:-1],
        "0" + encoding.encode_base58(b"\x01" * 3),
        "O2345",
        "I2345",
        "l2345",
        " " + encoding.encode_base58(b"\x01" * 4),
        encoding.encode_base58(b"\x01" * 4) + "\n",
        "",
    ],
)
def test_base58_refusals(text: str) -> None:
    refused(encoding.decode_base58, text, 4)


def test_base58_refuses_overlong_input_before_decoding() -> None:
    refused(encoding.decode_base58, "2" * 1_000_000, 64)
    with pytest.raises(InvalidAccount):
        encoding.decode_base58_key_upto("2" * 1_000_000, max_length=64)


def test_base64url_round_trip() -> None:
    data = bytes(range(250, 256)) + b"\x00"
    text = encoding.encode_base64url(data)
    assert "=" not in text
    assert "-" in text or "_" in text
    assert encoding.decode_base64url(text, length=len(data)) == data


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("AQ==", 1),  # padded
        ("AR", 1),  # non-zero trailing bits: same byte as "AQ"
        ("AQI", 1),
        ("A", 1),
        ("+/8", 2),  # standard alphabet, not url-safe
        ("AQ I", 3),
        ("AQ\n", 2),
        ("", 1),
    ],
)
def test_base64url_refusals(text: str, length: int) -> None:
    refused(encoding.decode_base64url, text, length)


@pytest.mark.parametrize("decoder", KEY_DECODERS)
def test_key_variants_raise_invalid_account(decoder: Decoder) -> None:
    with pytest.raises(InvalidAccount) as caught:
        decoder("not valid!", length=4)
    assert caught.value.code == "invalid_account"


def test_base58_key_upto_takes_any_length_within_bound() -> None:
    assert encoding.decode_base58_key_upto(encoding.encode_base58(b"\x07" * 9), max_length=9)
    with pytest.raises(InvalidAccount):
        encoding.decode_base58_key_upto(encoding.encode_base58(b"\x07" * 10), max_length=9)


@pytest.mark.parametrize(("encode", "decode", "decode_key"), PAIRS)
@settings(deadline=None)
@given(data=st.binary(max_size=80))
def test_round_trip(
    encode: Callable[[bytes], str], decode: Decoder, decode_key: Decoder, data: bytes
) -> None:
    text = encode(data)
    if data or decode is not encoding.decode_base58:
        assert decode(text, length=len(data)) == data
        assert decode_key(text, length=len(data)) == data


@pytest.mark.parametrize(("encode", "decode", "decode_key"), PAIRS)
@settings(deadline=None)
@given(data=st.binary(min_size=1, max_size=40))
def test_wrong_length_refused(
    encode: Callable[[bytes], str], decode: Decoder, decode_key: Decoder, data: bytes
) -> None:
    text = encode(data)
    refused(decode, text, len(data) + 1)
    refused(decode, text, len(data) - 1)


@pytest.mark.parametrize("decoder", SIGNATURE_DECODERS)
@settings(deadline=None)
@given(text=st.text(max_size=200), length=st.integers(min_value=0, max_value=80))
def test_signature_decoders_raise_only_malformed_signature(
    decoder: Decoder, text: str, length: int
) -> None:
    try:
        data = decoder(text, length=length)
    except MalformedSignature:
        return
    assert len(data) == length


@pytest.mark.parametrize("decoder", KEY_DECODERS)
@settings(deadline=None)
@given(text=st.text(alphabet="0x123456789abcdefABCDEFGHJKLMNPQRSTUVWXYZ-_= ", max_size=120))
def test_key_decoders_raise_only_keyproof_errors(decoder: Decoder, text: str) -> None:
    try:
        decoder(text, length=32)
    except KeyproofError as error:
        assert isinstance(error, InvalidAccount)


@settings(deadline=None)
@given(text=st.text(max_size=200))
def test_base58_key_upto_raises_only_invalid_account(text: str) -> None:
    try:
        data = encoding.decode_base58_key_upto(text, max_length=64)
    except InvalidAccount:
        return
    assert 0 < len(data) <= 64
    assert encoding.encode_base58(data) == text
