"""Ed25519 edge cases (C2SP CCTV, ed25519-speccheck) pinned to committed results.

These suites have no single correct answer; tests/vectors/golden/*.json records what
keyproof's verifier and bare pynacl accept. A library upgrade that changes either
set fails here; regenerate with tests/vectors/golden/make_golden.py only after review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from keyproof.crypto import ed25519
from keyproof.errors import KeyproofError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
REFUSED_BY_LIBSODIUM = {"low_order_A", "low_order_R", "non_canonical_A", "non_canonical_R"}


def load(relative: str) -> Any:
    return json.loads((VECTORS / relative).read_text())


def keyproof_accepts(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        ed25519.verify(message, signature, ed25519.check_public_key(key))
    except KeyproofError:
        return False
    return True


def pynacl_accepts(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(key).verify(message, signature)
    except CryptoError:
        return False
    return True


def cctv() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = load("cctv/ed25519vectors.json")
    return cases


def cctv_args(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return bytes.fromhex(case["key"]), case["msg"].encode(), bytes.fromhex(case["sig"])


def speccheck_args() -> list[tuple[bytes, bytes, bytes]]:
    return [
        (bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]), bytes.fromhex(c["signature"]))
        for c in load("speccheck/cases.json")
    ]


@pytest.mark.parametrize("column", ["keyproof_accepted", "pynacl_accepted"])
def test_cctv_matches_golden(column: str) -> None:
    golden = load("golden/ed25519_cctv.json")
    accepts = keyproof_accepts if column == "keyproof_accepted" else pynacl_accepts
    cases = cctv()
    assert len(cases) == golden["cases"] == 914
    assert [c["number"] for c in cases if accepts(*cctv_args(c))] == golden[column]


@pytest.mark.parametrize("column", ["keyproof_accepted", "pynacl_accepted"])
def test_speccheck_matches_golden(column: str) -> None:
    golden = load("golden/ed25519_speccheck.json")
    accepts = keyproof_accepts if column == "keyproof_accepted" else pynacl_accepts
    cases = speccheck_args()
    assert len(cases) == golden["cases"] == 12
    assert [n for n, args in enumerate(cases) if accepts(*args)] == golden[column]


def test_golden_counts_are_the_documented_ones() -> None:
    cctv_golden = load("golden/ed25519_cctv.json")
    speccheck_golden = load("golden/ed25519_speccheck.json")
    assert len(cctv_golden["pynacl_accepted"]) == 43
    assert speccheck_golden["pynacl_accepted"] == [3]
    # keyproof also refuses mixed-order keys, so it accepts a strict subset.
    assert cctv_golden["keyproof_accepted"] == [305]
    assert speccheck_golden["keyproof_accepted"] == []


def test_pynacl_accepts_no_low_order_or_non_canonical_point() -> None:
    accepted = set(load("golden/ed25519_cctv.json")["pynacl_accepted"])
    for case in cctv():
        if case["number"] in accepted:
            assert not REFUSED_BY_LIBSODIUM & set(case["flags"] or ())


def test_keyproof_accepts_no_key_with_a_torsion_component() -> None:
    accepted = set(load("golden/ed25519_cctv.json")["keyproof_accepted"])
    for case in cctv():
        if case["number"] in accepted:
            assert "low_order_component_A" not in (case["flags"] or ())
