"""Interleaved timing: keyproof and its baselines alternate round by round.

A case is a set of named sides (keyproof first, then each baseline), each a function
``run(n)`` doing ``n`` calls. Rounds go A, B, C, A, B, C, ... so that whatever else the
machine does lands on every side alike; each side's per-call time is the median of its
rounds, and its spread (the relative distance between its fastest and slowest round)
says how noisy the machine was.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

Batch = Callable[[int], object]

PACKAGES = (
    "keyproof",
    "coincurve",
    "pycryptodome",
    "safe-pysha3",
    "pynacl",
    "cryptography",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "hiredis",
    "asyncpg",
    "siwe",
    "eth-account",
    "pyjwt",
    "joserfc",
    "matplotlib",
)


def repeat(function: Callable[[], object]) -> Batch:
    """A batch that calls ``function`` ``n`` times."""

    def run(n: int) -> None:
        for _ in range(n):
            function()

    return run


def calls_for(batch: Batch, seconds: float) -> int:
    """How many calls fill about ``seconds``, from one warm-up call and a short probe."""
    batch(1)
    n, elapsed = 1, 0.0
    while n < 1_000_000:
        start = time.perf_counter()
        batch(n)
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            break
        n *= 4
    return max(1, int(n * seconds / max(elapsed, 1e-9)))


def interleave(
    sides: Mapping[str, Batch], *, rounds: int, seconds: float
) -> dict[str, dict[str, float]]:
    """Median and spread of the per-call time of each side, rounds alternating."""
    counts = {name: calls_for(batch, seconds) for name, batch in sides.items()}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, batch in sides.items():
            start = time.perf_counter()
            batch(counts[name])
            samples[name].append((time.perf_counter() - start) / counts[name])
    return {name: summary(values, counts[name]) for name, values in samples.items()}


def summary(values: list[float], calls: int) -> dict[str, float]:
    median = statistics.median(values)
    return {
        "us": round(median * 1e6, 2),
        "spread": round((max(values) - min(values)) / median, 3),
        "calls_per_round": calls,
    }


def compare_case(
    name: str,
    ours: Batch,
    baselines: Mapping[str, Batch],
    *,
    rounds: int,
    seconds: float,
    note: str = "",
) -> dict[str, Any]:
    """One in-process case: keyproof's time, each baseline's, and their speed ratio.

    ``speed_ratio`` is baseline time / keyproof time: above 1, keyproof is faster.
    """
    timed = interleave({"keyproof": ours, **baselines}, rounds=rounds, seconds=seconds)
    mine = timed.pop("keyproof")
    rows = [
        {"name": base, **row, "speed_ratio": round(row["us"] / mine["us"], 3)}
        for base, row in timed.items()
    ]
    result: dict[str, Any] = {"case": name, "keyproof": mine, "baselines": rows}
    if note:
        result["note"] = note
    return result


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters since boot (``/proc/stat``: user, nice, system,
    idle, iowait, irq, softirq, steal, ...), or None where there is no ``/proc``."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def cpu_shares(before: list[int] | None, after: list[int] | None) -> dict[str, float | None]:
    """Between two readings of :func:`cpu_times`, the shares of the machine's CPU time
    left idle (``idle_percent``) and taken by the hypervisor for other guests
    (``steal_percent``: time this machine's CPUs had work for and did not get). None
    without both readings."""
    if before is None or after is None or min(len(before), len(after)) < 8:
        return {"idle_percent": None, "steal_percent": None}
    # guest time (fields 9 and 10) is counted in user time already
    spent = [later - earlier for earlier, later in zip(before[:8], after[:8], strict=True)]
    total = sum(spent) or 1
    return {
        "idle_percent": round(100 * (spent[3] + spent[4]) / total, 2),  # idle + iowait
        "steal_percent": round(100 * spent[7] / total, 2),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
