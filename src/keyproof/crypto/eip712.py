"""EIP-712 typed structured data: the digest an Ethereum wallet signs for ``eth_signTypedData_v4``.

Implements ``encodeType``, ``hashStruct`` and the ``\\x19\\x01`` envelope of
https://eips.ethereum.org/EIPS/eip-712 for structs whose members are ``string``,
``uint256``, ``address``, ``bytes32`` or another struct of the
same type set. Arrays and the other atomic types are not needed by keyproof and are
refused with ``ValueError`` (the type sets are fixed in code, never taken from input).

Types are given as ``{"TypeName": (("member", "type"), ...)}`` in member order.

Hand-written rather than eth-account's ``encode_typed_data``, which hashes the same
bytes (``tests/test_actions.py`` checks both agree): that would make eth-account and its
eth-abi/pydantic stack a runtime dependency, slow to import, for one hash, and the
``eip712_digest`` case of ``python -m benchmarks`` measures this version faster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from keyproof.crypto.secp256k1 import keccak256

__all__ = [
    "DOMAIN_FIELDS",
    "Types",
    "domain_separator",
    "domain_types",
    "encode_type",
    "hash_struct",
    "typed_data_digest",
]

Types = Mapping[str, Sequence[tuple[str, str]]]

DOMAIN_FIELDS: Final = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)
_UINT256_LIMIT: Final = 1 << 256


def _dependencies(primary: str, types: Types, found: set[str]) -> set[str]:
    if primary in found or primary not in types:
        return found
    found.add(primary)
    for _, member_type in types[primary]:
        _dependencies(member_type, types, found)
    return found


def encode_type(primary: str, types: Types) -> str:
    """``Name(type1 member1,…)`` followed by referenced struct types, sorted by name."""
    referenced = sorted(_dependencies(primary, types, set()) - {primary})
    return "".join(
        f"{name}({','.join(f'{kind} {member}' for member, kind in types[name])})"
        for name in (primary, *referenced)
    )


def hash_struct(primary: str, types: Types, data: Mapping[str, Any]) -> bytes:
    """``keccak256(typeHash ‖ encodeData(data))``; every member must be present."""
    type_hash = keccak256(encode_type(primary, types).encode("utf-8"))
    encoded = b"".join(_encode_value(kind, data[member], types) for member, kind in types[primary])
    return keccak256(type_hash + encoded)


def domain_types(domain: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The ``EIP712Domain`` members present in ``domain``, in the EIP's order."""
    return tuple((member, kind) for member, kind in DOMAIN_FIELDS if member in domain)


def domain_separator(domain: Mapping[str, Any]) -> bytes:
    """``hashStruct(eip712Domain)`` over the members present in ``domain``."""
    return hash_struct("EIP712Domain", {"EIP712Domain": domain_types(domain)}, domain)


def typed_data_digest(
    domain: Mapping[str, Any], primary: str, types: Types, message: Mapping[str, Any]
) -> bytes:
    """``keccak256("\\x19\\x01" ‖ domainSeparator ‖ hashStruct(message))``."""
    return keccak256(b"\x19\x01" + domain_separator(domain) + hash_struct(primary, types, message))


def _encode_value(kind: str, value: Any, types: Types) -> bytes:
    if kind in types:
        return hash_struct(kind, types, value)
    if kind == "string":
        return keccak256(str(value).encode("utf-8"))
    if kind == "uint256":
        return _uint256(value)
    if kind == "address":
        return _fixed_bytes(value, 20).rjust(32, b"\x00")
    if kind == "bytes32":
        return _fixed_bytes(value, 32)
    raise ValueError(f"unsupported EIP-712 type {kind!r}")


def _uint256(value: Any) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _UINT256_LIMIT:
        raise ValueError("uint256 out of range")
    return value.to_bytes(32, "big")


def _fixed_bytes(value: Any, length: int) -> bytes:
    raw = bytes.fromhex(value[2:]) if isinstance(value, str) and value[:2] == "0x" else value
    if not isinstance(raw, bytes) or len(raw) != length:
        raise ValueError(f"expected {length} bytes")
    return raw
