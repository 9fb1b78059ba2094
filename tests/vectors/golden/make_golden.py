"""Regenerate the pinned Ed25519 edge-case results (run from the repository root).

    PYTHONPATH=src python tests/vectors/golden/make_golden.py

Writes ``ed25519_cctv.json`` and ``ed25519_speccheck.json`` beside this script. Each
lists the case numbers accepted by keyproof's verifier (``check_public_key`` then
``verify``) and by bare pynacl (``VerifyKey(key).verify(msg, sig)``). The edge-case
suites have no single right answer; pinning the answer we ship means a library
upgrade that changes it fails a test instead of passing silently. Review any diff.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import nacl
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from keyproof.crypto import ed25519
from keyproof.errors import KeyproofError

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent

Case = tuple[int, bytes, bytes, bytes]  # number, key, message, signature


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


def cctv_cases() -> list[Case]:
    data = json.loads((VECTORS / "cctv" / "ed25519vectors.json").read_text())
    return [
        (c["number"], bytes.fromhex(c["key"]), c["msg"].encode(), bytes.fromhex(c["sig"]))
        for c in data
    ]


def speccheck_cases() -> list[Case]:
    data = json.loads((VECTORS / "speccheck" / "cases.json").read_text())
    return [
        (n, bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]), bytes.fromhex(c["signature"]))
        for n, c in enumerate(data)
    ]


def results(source: str, found: Iterable[Case]) -> dict[str, object]:
    cases = list(found)
    return {
        "source": source,
        "generated_by": "tests/vectors/golden/make_golden.py",
        "pynacl_version_at_generation": nacl.__version__,
        "cases": len(cases),
        "keyproof_accepted": [n for n, k, m, s in cases if keyproof_accepts(k, m, s)],
        "pynacl_accepted": [n for n, k, m, s in cases if pynacl_accepts(k, m, s)],
    }


def main() -> None:
    outputs = {
        "ed25519_cctv.json": results("cctv/ed25519vectors.json", cctv_cases()),
        "ed25519_speccheck.json": results("speccheck/cases.json", speccheck_cases()),
    }
    for name, body in outputs.items():
        (HERE / name).write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    main()
