"""The few Solidity ABI shapes keyproof needs (Solidity docs, "Contract ABI Specification").

Encodes the arguments of :mod:`keyproof.chain._check`'s constructor (static words and
dynamic ``bytes``) and decodes ``(address, bytes, bytes)``, the ERC-6492 wrapper, with
the bounds Solidity's ``abi.decode`` applies: offsets and lengths inside the data, an
address word with its upper 12 bytes zero.

Hand-written rather than eth-abi: these two shapes are ~50 lines, while eth-abi would
bring eth-utils, eth-typing and parsimonious into the verifier's base install.
``tests/chain/test_chain_abi.py`` checks both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Word", "address", "bytes32", "decode_address_bytes_bytes", "encode", "uint256"]

WORD: Final = 32
_ADDRESS_PADDING: Final = bytes(12)


@dataclass(frozen=True, slots=True)
class Word:
    """A static ABI value, already encoded as one 32-byte word."""

    data: bytes


def uint256(value: int) -> Word:
    return Word(value.to_bytes(WORD, "big"))


def address(raw: bytes) -> Word:
    if len(raw) != 20:
        raise ValueError("an address is 20 bytes")
    return Word(_ADDRESS_PADDING + raw)


def bytes32(raw: bytes) -> Word:
    if len(raw) != WORD:
        raise ValueError("bytes32 is 32 bytes")
    return Word(raw)


def encode(*values: Word | bytes) -> bytes:
    """``abi.encode(values...)``: a :class:`Word` is static, plain ``bytes`` is ``bytes``."""
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = WORD * len(values)
    for value in values:
        if isinstance(value, Word):
            heads.append(value.data)
            continue
        heads.append(offset.to_bytes(WORD, "big"))
        tail = len(value).to_bytes(WORD, "big") + value + bytes(-len(value) % WORD)
        tails.append(tail)
        offset += len(tail)
    return b"".join(heads + tails)


def decode_address_bytes_bytes(data: bytes) -> tuple[bytes, bytes, bytes]:
    """``abi.decode(data, (address, bytes, bytes))``; ``ValueError`` where Solidity reverts."""
    if len(data) < 3 * WORD or data[:12] != _ADDRESS_PADDING:
        raise ValueError("not ABI-encoded (address, bytes, bytes)")
    return data[12:WORD], _dynamic_bytes(data, WORD), _dynamic_bytes(data, 2 * WORD)


def _dynamic_bytes(data: bytes, head: int) -> bytes:
    offset = int.from_bytes(data[head : head + WORD], "big")
    if offset + WORD > len(data):
        raise ValueError("bytes offset outside the data")
    length = int.from_bytes(data[offset : offset + WORD], "big")
    start = offset + WORD
    if start + length > len(data):
        raise ValueError("bytes length outside the data")
    return data[start : start + length]
