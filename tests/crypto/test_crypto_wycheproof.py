"""Wycheproof conformance of keyproof's own verifiers (C2SP/wycheproof @ dac1dd4).

Every case in each file is run; the case counts are asserted so that no vector can
be skipped silently. Our policy differs from Wycheproof's in one documented place:
low-S is required, so high-S signatures Wycheproof calls valid are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyproof.crypto import ed25519, secp256k1
from keyproof.errors import InvalidAccount, MalformedSignature, SignatureInvalid

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "wycheproof"
HALF_ORDER = secp256k1.CURVE_ORDER // 2
REFUSALS = (InvalidAccount, MalformedSignature, SignatureInvalid)

Case = tuple[dict[str, Any], dict[str, Any]]


def cases(name: str) -> list[Case]:
    data = json.loads((VECTORS / name).read_text())
    found = [(group, test) for group in data["testGroups"] for test in group["tests"]]
    assert len(found) == data["numberOfTests"]
    return found


def accepts(check: Callable[[], object]) -> bool:
    try:
        check()
    except REFUSALS:
        return False
    return True


def outcomes(found: list[Case], verify: Callable[[Case], object]) -> Iterator[tuple[int, bool]]:
    for case in found:
        yield case[1]["tcId"], accepts(functools.partial(verify, case))


def strict_der(signature: bytes) -> tuple[int, int] | None:
    """Parse a DER ECDSA signature (SEQUENCE of two INTEGERs), refusing any BER laxity."""
    if not 8 <= len(signature) <= 72 or signature[0] != 0x30 or signature[1] != len(signature) - 2:
        return None
    r, rest = der_integer(signature[2:])
    s, rest = der_integer(rest)
    if r is None or s is None or rest:
        return None
    return r, s


def der_integer(data: bytes) -> tuple[int | None, bytes]:
    if len(data) < 3 or data[0] != 0x02 or not 1 <= data[1] <= 33 or len(data) < 2 + data[1]:
        return None, b""
    body = data[2 : 2 + data[1]]
    negative = body[0] >= 0x80
    padded = len(body) > 1 and body[0] == 0 and body[1] < 0x80
    if negative or padded:
        return None, b""
    return int.from_bytes(body, "big"), data[2 + data[1] :]


def verify_bitcoin(case: Case) -> None:
    group, test = case
    parsed = strict_der(bytes.fromhex(test["sig"]))
    if parsed is None:
        raise MalformedSignature("malformed_signature", "not strict DER")
    digest = hashlib.sha256(bytes.fromhex(test["msg"])).digest()
    key = bytes.fromhex(group["publicKey"]["uncompressed"])
    secp256k1.verify_digest(digest, *parsed, key)


def verify_p1363(case: Case) -> None:
    group, test = case
    key = bytes.fromhex(group["publicKey"]["uncompressed"])
    secp256k1.verify_sha256_ecdsa(bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]), key)


def verify_ed25519(case: Case) -> None:
    group, test = case
    key = ed25519.check_public_key(bytes.fromhex(group["publicKey"]["pk"]))
    ed25519.verify(bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]), key)


def expected(found: list[Case]) -> dict[int, bool]:
    return {test["tcId"]: test["result"] == "valid" for _, test in found}


def high_s_valid(found: list[Case], s_of: Callable[[str], int | None]) -> set[int]:
    return {
        test["tcId"]
        for _, test in found
        if test["result"] == "valid" and (s_of(test["sig"]) or 0) > HALF_ORDER
    }


def p1363_s(sig: str) -> int | None:
    raw = bytes.fromhex(sig)
    return int.from_bytes(raw[32:], "big") if len(raw) == 64 else None


def der_s(sig: str) -> int | None:
    parsed = strict_der(bytes.fromhex(sig))
    return parsed[1] if parsed else None


def test_bitcoin_der_all_463_agree() -> None:
    found = cases("ecdsa_secp256k1_sha256_bitcoin_test.json")
    got = dict(outcomes(found, verify_bitcoin))
    assert len(got) == 463
    assert got == expected(found)
    assert sum(got.values()) == 162


def test_p1363_agrees_except_high_s_valid_cases() -> None:
    found = cases("ecdsa_secp256k1_sha256_p1363_test.json")
    got = dict(outcomes(found, verify_p1363))
    want = expected(found)
    disagree = {tc for tc in got if got[tc] != want[tc]}
    high_s = high_s_valid(found, p1363_s)
    assert len(got) == 252
    assert len(high_s) == 72
    assert disagree == high_s
    assert not any(got[tc] for tc in high_s)


def test_der_suite_agrees_except_exactly_72_high_s_valid_cases() -> None:
    found = cases("ecdsa_secp256k1_sha256_test.json")
    got = dict(outcomes(found, verify_bitcoin))
    want = expected(found)
    disagree = {tc for tc in got if got[tc] != want[tc]}
    assert len(got) == 476
    assert disagree == high_s_valid(found, der_s)
    assert len(disagree) == 72


def test_ed25519_all_151_agree() -> None:
    found = cases("ed25519_test.json")
    got = dict(outcomes(found, verify_ed25519))
    assert len(got) == 151
    assert got == expected(found)
    assert sum(got.values()) == 88


def test_ed25519_refused_keys_only_in_invalid_cases() -> None:
    found = cases("ed25519_test.json")
    refused = set()
    for group, test in found:
        key = bytes.fromhex(group["publicKey"]["pk"])
        if not accepts(functools.partial(ed25519.check_public_key, key)):
            refused.add(test["tcId"])
    assert not any(expected(found)[tc] for tc in refused)


@pytest.mark.parametrize(
    ("signature", "ok"),
    [
        ("3006020101020101", True),
        ("30070201010202007f", False),  # INTEGER padded with a needless zero
        ("3006020181020101", False),  # negative INTEGER
        ("308106020101020101", False),  # long-form length
        ("300702010102010100", False),  # trailing byte inside the SEQUENCE
        ("300602010102010100", False),  # trailing byte after the SEQUENCE
        ("3007020101020101", False),  # SEQUENCE length too long
        ("3006020100020101", True),  # r = 0 parses; the verifier refuses it
    ],
)
def test_strict_der_adapter(signature: str, ok: bool) -> None:
    assert (strict_der(bytes.fromhex(signature)) is not None) is ok
