"""Strict, canonical byte encodings for signatures and keys.

Every decoder takes the exact byte length it expects, bounds the text before
decoding, and accepts one spelling per value only:

- ``0x`` hex: ``0x`` prefix, exactly ``2 * length`` hex digits (either case); no
  whitespace, sign or underscores (``bytes.fromhex`` alone would accept spaces).
- base58 (bitcoin alphabet): the text must be what encoding the decoded bytes
  gives back, so extra or missing leading ``1`` characters are refused.
- base64url (RFC 4648 §5) unpadded: strict alphabet, non-zero trailing bits refused.
  :func:`parse_base64url` is the one canonical decoder every other module uses.

``decode_*`` raise :class:`MalformedSignature`; ``decode_*_key`` raise
:class:`InvalidAccount` (``invalid_account``) for text that names a key or an account.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable

import base58

from keyproof.errors import InvalidAccount, MalformedSignature

__all__ = [
    "decode_base58",
    "decode_base58_key",
    "decode_base58_key_upto",
    "decode_base64url",
    "decode_base64url_key",
    "decode_hex0x",
    "decode_hex0x_key",
    "encode_base58",
    "encode_base64url",
    "encode_hex0x",
    "parse_base64url",
]

_HEX = re.compile(r"0x[0-9a-fA-F]*", re.ASCII)
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+", re.ASCII)
_KEYS_KEPT = 4096
_KEY_CHARS_KEPT = 256
_BASE58_DIGITS = bytes.maketrans(base58.BITCOIN_ALPHABET, bytes(range(58)))
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)
# The last character of 2 (or 3) characters mod 4 carries 4 (or 2) bits past the data.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def encode_hex0x(data: bytes) -> str:
    """Lower-case hex with a ``0x`` prefix."""
    return "0x" + data.hex()


def encode_base58(data: bytes) -> str:
    """Base58 with the bitcoin alphabet."""
    return base58.b58encode(data).decode("ascii")


def encode_base64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hex0x(text: str, length: int) -> bytes | None:
    if len(text) != 2 + 2 * length or _HEX.fullmatch(text) is None:
        return None
    return bytes.fromhex(text[2:])


def _base58_max_chars(length: int) -> int:
    # log(256) / log(58) < 1.366; each leading zero byte is one "1" character.
    return length * 1366 // 1000 + 1


def _base58(text: str, max_length: int) -> bytes | None:
    if not 0 < len(text) <= _base58_max_chars(max_length) or _BASE58.fullmatch(text) is None:
        return None
    # Canonical by construction: each leading "1" is one zero byte, and the rest, which
    # does not start with "1", is the one spelling of its integer, so encoding the bytes
    # gives ``text`` back. Too many leading "1"s are refused by the length.
    digits = text.lstrip("1")
    value = _base58_value(digits.encode("ascii").translate(_BASE58_DIGITS))
    size = (value.bit_length() + 7) // 8
    zeros = len(text) - len(digits)
    if zeros + size > max_length:
        return None
    return bytes(zeros) + value.to_bytes(size, "big")


def _base58_value(digits: bytes) -> int:
    """The integer whose base-58 digits are ``digits``, most significant first."""
    # Three digits at a time on small integers: a third of the big-integer steps.
    head = len(digits) % 3
    value = 0
    for digit in digits[:head]:
        value = value * 58 + digit
    rest = iter(digits[head:])
    for high, middle, low in zip(rest, rest, rest, strict=True):
        value = value * 195112 + (high * 58 + middle) * 58 + low  # 58 ** 3
    return value


def parse_base64url(text: str, *, max_length: int) -> bytes | None:
    """Canonical unpadded base64url of at most ``max_length`` bytes, else ``None``.

    For callers that raise their own error (tokens, JWKs, ReCaps, key files).
    """
    if len(text) > (4 * max_length + 2) // 3 or len(text) % 4 == 1:
        return None
    if _BASE64URL.fullmatch(text) is None:
        return None
    return _canonical_base64url(text)


def parse_base64url_segments(text: str) -> list[bytes] | None:
    """The ``.``-separated segments of ``text`` (a compact JWS) after the first, each
    decoded as by :func:`parse_base64url`, else ``None``; the caller bounds the length of
    ``text`` and decodes the first segment itself."""
    if "+" in text or "/" in text or "=" in text:  # base64, or padded
        return None
    decoded = []
    for segment in _to_base64(text).split(".")[1:]:
        # The strict decoder refuses every character outside the base64 alphabet.
        data = _canonical_base64(segment, strict=True) if len(segment) % 4 != 1 else None
        if data is None:
            return None
        decoded.append(data)
    return decoded


def _canonical_base64url(text: str) -> bytes | None:
    """Decode text of the base64url alphabet whose length is not 1 mod 4."""
    return _canonical_base64(_to_base64(text))


def _to_base64(text: str) -> str:
    return text.replace("-", "+").replace("_", "/")


def _canonical_base64(text: str, *, strict: bool = False) -> bytes | None:
    """Decode unpadded base64 whose length is not 1 mod 4 (of its alphabet unless strict)."""
    # Canonical means the bits past the last whole byte are zero: what encoding the
    # decoded bytes gives back, checked on the last character instead of re-encoding.
    tail = len(text) % 4
    if tail and text[-1] not in _CANONICAL_LAST[tail]:
        return None
    try:
        return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=strict)
    except ValueError:  # binascii.Error, or a character that is not ASCII
        return None


def _base58_key(text: str, max_length: int) -> bytes | None:
    """:func:`_base58` for keys and accounts, which a sign-in decodes several times: the
    answers for short texts are kept."""
    if len(text) > _KEY_CHARS_KEPT:
        return _base58(text, max_length)
    return _kept_base58(text, max_length)


@functools.lru_cache(maxsize=_KEYS_KEPT)
def _kept_base58(text: str, max_length: int) -> bytes | None:
    return _base58(text, max_length)


def _base64url(text: str, length: int) -> bytes | None:
    if len(text) != (4 * length + 2) // 3:
        return None
    return parse_base64url(text, max_length=length)


def _exact(decoder: Callable[[str, int], bytes | None], text: str, length: int) -> bytes | None:
    data = decoder(text, length)
    return data if data is not None and len(data) == length else None


def _signature(data: bytes | None, what: str) -> bytes:
    if data is None:
        raise MalformedSignature("malformed_signature", f"signature is not valid {what}")
    return data


def _key(data: bytes | None, what: str) -> bytes:
    if data is None:
        raise InvalidAccount("invalid_account", f"key is not valid {what}")
    return data


def decode_hex0x(text: str, *, length: int) -> bytes:
    """Decode ``0x`` + ``2 * length`` hex digits; else ``malformed_signature``."""
    return _signature(_exact(_hex0x, text, length), "0x-prefixed hex of the expected length")


def decode_base58(text: str, *, length: int) -> bytes:
    """Decode canonical base58 of exactly ``length`` bytes; else ``malformed_signature``."""
    return _signature(_exact(_base58, text, length), "base58 of the expected length")


def decode_base64url(text: str, *, length: int) -> bytes:
    """Decode canonical unpadded base64url of ``length`` bytes; else ``malformed_signature``."""
    return _signature(_exact(_base64url, text, length), "base64url of the expected length")


def decode_hex0x_key(text: str, *, length: int) -> bytes:
    """As :func:`decode_hex0x`, raising ``invalid_account``."""
    return _key(_exact(_hex0x, text, length), "0x-prefixed hex of the expected length")


def decode_base58_key(text: str, *, length: int) -> bytes:
    """As :func:`decode_base58`, raising ``invalid_account``."""
    return _key(_exact(_base58_key, text, length), "base58 of the expected length")


def decode_base58_key_upto(text: str, *, max_length: int) -> bytes:
    """Decode canonical base58 of 1 to ``max_length`` bytes; else ``invalid_account``.

    For self-describing payloads (multicodec) whose length depends on their prefix.
    """
    return _key(_base58_key(text, max_length), "base58")


def decode_base64url_key(text: str, *, length: int) -> bytes:
    """As :func:`decode_base64url`, raising ``invalid_account``."""
    return _key(_exact(_base64url, text, length), "base64url of the expected length")
