"""Wycheproof conformance of keyproof's own verifiers (C2SP/wycheproof @ dac1dd4).

Every case in each file is run; the case counts are asserted so that no vector can
be skipped silently. Our policy differs from Wycheproof's in one documented place:
low-S is required, so high-S signatures Wycheproof calls valid are refused.

keyproof never parses DER (EIP-191 and did:key signatures are fixed-width), so the
DER files reach ``verify_digest`` through ``strict_der``, an adapter in this file: in
those runs the DER-malformed cases test the adapter, the rest test keyproof. The
EIP-191 recovery core (``recover_digest``) is run on the same (r, s) pairs below.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import coincurve
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


# --- the EIP-191 recovery core on the same (r, s) pairs ---------------------------------
#
# Ethereum signatures carry no public key: the verifier recovers one from (digest, r, s,
# recovery id) and compares addresses. For recovery, a case "agrees" when some recovery
# id in {0, 1} (v = 27 or 28) makes ``recover_digest`` return the address of the
# vector's key exactly when Wycheproof calls the case valid (and, for us, low-S). Cases
# whose bytes give no (r, s) (malformed DER, wrong length, a scalar over 32 bytes) are
# refused before recovery and count as "never recovers".


def recovery_ids(digest: bytes, rs: tuple[int, int] | None, key: bytes) -> set[int]:
    """The recovery ids in {0, 1} for which ``recover_digest`` yields ``key``'s address."""
    if rs is None or max(rs) >= 1 << 256:
        return set()
    address = secp256k1.address_from_public_key(key)
    prefix = rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big")
    found = set()
    for recovery_id in (0, 1):
        try:
            recovered = secp256k1.recover_digest(digest, prefix + bytes([recovery_id]))
        except REFUSALS:
            continue
        if recovered == address:
            found.add(recovery_id)
    return found


def recovery_outcomes(
    found: list[Case], rs_of: Callable[[str], tuple[int, int] | None]
) -> dict[int, set[int]]:
    outcomes: dict[int, set[int]] = {}
    for group, test in found:
        digest = hashlib.sha256(bytes.fromhex(test["msg"])).digest()
        key = bytes.fromhex(group["publicKey"]["uncompressed"])
        outcomes[test["tcId"]] = recovery_ids(digest, rs_of(test["sig"]), key)
    return outcomes


def p1363_rs(sig: str) -> tuple[int, int] | None:
    raw = bytes.fromhex(sig)
    if len(raw) != 64:
        return None
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def der_rs(sig: str) -> tuple[int, int] | None:
    return strict_der(bytes.fromhex(sig))


def needs_recovery_id_2_or_3(case: Case) -> bool:
    """R's x is r + n: only recovery ids 2 and 3 reach it, and EIP-191's v has neither."""
    group, test = case
    rs = der_rs(test["sig"])
    if rs is None or max(rs) >= 1 << 256:
        return False
    digest = hashlib.sha256(bytes.fromhex(test["msg"])).digest()
    key = coincurve.PublicKey(bytes.fromhex(group["publicKey"]["uncompressed"]))
    compact = rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big")
    for recovery_id in (2, 3):
        with contextlib.suppress(ValueError):
            recovered = coincurve.PublicKey.from_signature_and_message(
                compact + bytes([recovery_id]), digest, hasher=None
            )
            if recovered.format() == key.format():
                return True
    return False


def test_bitcoin_recovery_agrees_except_large_x_coordinate() -> None:
    found = cases("ecdsa_secp256k1_sha256_bitcoin_test.json")
    got = recovery_outcomes(found, der_rs)
    want = expected(found)
    disagree = {tc for tc in got if bool(got[tc]) != want[tc]}
    assert len(got) == 463
    # One valid case (tcId 346, "k*G has a large x-coordinate") cannot be written as an
    # Ethereum signature at all; every other case agrees, and no invalid one recovers.
    assert all(want[tc] for tc in disagree)
    large_x = {case[1]["tcId"] for case in found if needs_recovery_id_2_or_3(case)}
    assert disagree == large_x
    assert len(disagree) == 1
    assert sum(bool(ids) for ids in got.values()) == 161
    assert set().union(*got.values()) == {0, 1}
    assert all(len(ids) <= 1 for ids in got.values())


def test_p1363_recovery_agrees_except_high_s_valid_cases() -> None:
    # No adapter here: the 64 bytes are r‖s as they would sit in an EIP-191 signature.
    found = cases("ecdsa_secp256k1_sha256_p1363_test.json")
    got = recovery_outcomes(found, p1363_rs)
    want = expected(found)
    disagree = {tc for tc in got if bool(got[tc]) != want[tc]}
    assert len(got) == 252
    assert disagree == high_s_valid(found, p1363_s)
    assert len(disagree) == 72
    assert not any(got[tc] for tc in disagree)
    assert set().union(*got.values()) == {0, 1}
