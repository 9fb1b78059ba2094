"""`benchmarks.timeshare` puts real py-spy samples of known work in the right part.

Each case samples a child Python process that spends its time in one kind of work
(SQLite statements, Ed25519 verification, keyproof's JSON depth check, a loop in
Python) and checks that most samples land in that part. py-spy must be able to attach to the
child (root, or ``kernel.yama.ptrace_scope`` 0); where it cannot, the tests are skipped
with py-spy's reason, unless ``KEYPROOF_REQUIRE_PROFILER=1`` (CI) makes them fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from benchmarks import timeshare

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 2
WORK = {
    "store driver": """
        import sqlite3
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 50,)] * 20000)
        while True:
            db.execute("SELECT count(*), max(length(v)) FROM t WHERE v LIKE '%y%'").fetchall()
    """,
    "cryptography": """
        from nacl.signing import SigningKey
        key = SigningKey.generate()
        signed = key.sign(b"m" * 300)
        verify = key.verify_key.verify
        while True:
            verify(signed)
    """,
    "app's own Python": """
        from keyproof._json import NestedTooDeeply, loads_strict
        # Too deep: refused by the depth check, which reads it a character at a time.
        text = ("[" * 9 + '"' + "a" * 5000 + '"' + "]" * 9).encode()
        while True:
            try:
                loads_strict(text)
            except NestedTooDeeply:
                pass
    """,
}


@pytest.fixture(scope="module")
def profiler() -> None:
    reason = None if timeshare.available() else "py-spy is not installed (pip install py-spy)"
    if reason is None:
        reason = _attach_failure()
    if reason is not None:
        if os.environ.get("KEYPROOF_REQUIRE_PROFILER") == "1":
            pytest.fail(f"{reason}, and KEYPROOF_REQUIRE_PROFILER=1", pytrace=False)
        pytest.skip(reason)


def _attach_failure() -> str | None:
    with _busy("while True: pass") as child:
        try:
            timeshare.sample(child.pid, 1)
        except RuntimeError as exc:
            return str(exc)
    return None


@contextmanager
def _busy(code: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child Python process running ``code`` until the block ends."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT)
    try:
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)


@pytest.mark.parametrize("part", list(WORK))
def test_samples_of_known_work_land_in_its_part(profiler: None, part: str):
    with _busy(WORK[part]) as child:
        shares = timeshare.sample(child.pid, SECONDS)
    assert shares["samples"] >= 50, shares
    assert set(shares["percent"]) == set(timeshare.PARTS)
    assert 99 <= sum(shares["percent"].values()) <= 101
    assert shares["percent"][part] >= 60, shares["percent"]


def test_a_failure_to_attach_is_an_error_with_py_spy_reason(profiler: None):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=10)  # its pid names no process now
    with pytest.raises(RuntimeError, match="py-spy failed"):
        timeshare.sample(finished.pid, 1)
