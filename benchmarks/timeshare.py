"""Where a login's server time goes: py-spy samples of a server under the login driver.

``py-spy record --native`` samples a one-worker server (interpreter and C frames) while
the login driver loads it at peak. Each sample goes to the part of the stack that was
running:

- ``store driver``: SQLite's library and Python's ``sqlite3`` module, its file I/O and
  locks included; redis-py and hiredis;
- ``cryptography``: libsodium (pynacl), libsecp256k1 (coincurve) and their wrappers;
- ``C library``: the C library called from Python code (system calls: socket sends
  and reads, the audit log's writes, random bytes; memory); SQLite's calls are the
  store driver's;
- ``event loop``: uvloop, libuv and asyncio;
- ``framework``: uvicorn, Starlette and httptools;
- ``JSON``: the standard library's ``json``;
- ``app's own Python``: the server's own modules (keyproof's, or the minimal login app's);
- ``other``: the rest of the standard library and packages, and the interpreter
  outside any Python frame.

A C frame of the interpreter belongs to the innermost Python frame above it. Each
part's share of the samples, times the server's CPU time per login measured without
the sampler, gives its microseconds per login. The sampler stops the process for each
sample, so the run it watches is slower; it is used for the shares only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["PARTS", "available", "part_of", "sample", "shares"]

PARTS = (
    "app's own Python",
    "store driver",
    "cryptography",
    "C library",
    "event loop",
    "framework",
    "JSON",
    "other",
)
RATE = 100  # samples per second: py-spy's default, which stops the process least
# Native frames by their function, library or source file.
_NATIVE = (
    (
        "store driver",
        re.compile(r"^(sqlite3|_?pysqlite|redis)|\((lib)?sqlite3|\(_sqlite3|hiredis", re.I),
    ),
    (
        "cryptography",
        re.compile(
            r"^(_cffi_f_)?(crypto_|_crypto_|[fgs][ec]25519|sodium|secp256k1|sha\d|keccak|EVP_)"
            r"|sodium|secp256k1|ed25519|libcrypto|_hashlib|sha3",
            re.I,
        ),
    ),
    (
        "event loop",
        re.compile(
            r"^uv_|uvloop|libuv|\((loop|core|loop-watcher|stream|linux|timer|async|poll|signal"
            r"|handle|udp|tcp|process)\.c|\((queue|heap-inl)\.h|\(_asynciomodule\.c"
        ),
    ),
    ("framework", re.compile(r"httptools|\((llhttp|api|http|parser)\.c")),
)
# Python frames by the package their file is in.
_PYTHON = (
    ("app's own Python", re.compile(r"(^|/)(keyproof/|benchmarks/minimal_login\.py)")),
    ("store driver", re.compile(r"(^|/)(redis|sqlite3)/")),
    ("cryptography", re.compile(r"(^|/)(nacl|coincurve|cryptography)/")),
    ("event loop", re.compile(r"(^|/)(asyncio|uvloop)/")),
    ("framework", re.compile(r"(^|/)(uvicorn|starlette|httptools|h11)/")),
    ("JSON", re.compile(r"(^|/)json/")),
)
_LIBC = re.compile(r"\(libc[.-]")


def available() -> str | None:
    """The py-spy executable, or None when it is not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def part_of(stack: list[str]) -> str:
    """The part a sampled stack (outermost frame first) counts for."""
    python = [i for i, frame in enumerate(stack) if _is_python(frame)]
    native = stack[python[-1] + 1 :] if python else stack
    for part in ("store driver", "cryptography"):  # a library's own calls are its own
        if any(_native_part(frame) == part for frame in native):
            return part
    if native and python and _LIBC.search(native[-1]):
        return "C library"
    for frame in reversed(native):
        part = _native_part(frame)
        if part is not None:
            return part
    # Generated code (a dataclass's __init__) runs for the nearest file above it.
    files = [stack[i] for i in python if ".py:" in stack[i]]
    return _python_part(files[-1]) if files else "other"


def shares(lines: Iterable[str]) -> tuple[dict[str, float], int]:
    """Each part's percentage of the samples in py-spy's ``raw`` (collapsed) output, and
    the number of samples."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            counts[part_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    if total == 0:
        return {}, 0
    return {part: round(100 * counts[part] / total, 1) for part in PARTS}, total


def sample(pid: int, seconds: float, during: Callable[[], object] = lambda: None) -> Any:
    """Each part's share of samples of process ``pid`` over ``seconds``, while ``during()``
    runs (the load). Raises ``RuntimeError`` with py-spy's reason on failure."""
    spy = available()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="keyproof-bench-") as directory:
        output = Path(directory) / "samples.txt"
        command = [spy, "record", "--native", "--format", "raw", "--rate", str(RATE)]
        command += ["--duration", str(max(1, round(seconds))), "--pid", str(pid)]
        command += ["--output", str(output)]
        with subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as sampler:
            during()
            try:
                _, errors = sampler.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                sampler.kill()
                raise RuntimeError("py-spy did not finish") from None
        if sampler.returncode != 0 or not output.exists():
            reason = " ".join(errors.split())[-300:] or f"exit status {sampler.returncode}"
            raise RuntimeError(f"py-spy failed: {reason}")
        percent, samples = shares(output.read_text().splitlines())
    return {"percent": percent, "samples": samples, "rate": RATE}


def _is_python(frame: str) -> bool:
    return ".py:" in frame or " (<" in frame  # a file, or <string> and <frozen ...>


def _native_part(frame: str) -> str | None:
    return next((part for part, pattern in _NATIVE if pattern.search(frame)), None)


def _python_part(frame: str) -> str:
    where = frame.rpartition(" (")[2]
    return next((part for part, pattern in _PYTHON if pattern.search(where)), "other")
