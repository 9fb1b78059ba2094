"""Measure keyproof against what a user would otherwise pick; write JSON and a PNG chart.

    python -m benchmarks [--quick] [--no-http] [--output benchmarks/results/latest.json]

In-process cases (``benchmarks.inprocess``), in-process logins on each store
(``benchmarks.logins``), HTTP cases against a bare Starlette app started in the same
run (``benchmarks.httpcases``, needs ``wrk``) and the memory of an outstanding
challenge (``benchmarks.memory``). Every side of a comparison alternates with the
others round by round; medians are reported with their spread. ``--quick`` runs small
bounded counts (a smoke test, numbers meaningless). The README table is rewritten from
the JSON by ``python -m benchmarks.readme``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import httpcases, inprocess, memory
from benchmarks.harness import cpu_shares, cpu_times, load_average, machine_facts
from benchmarks.logins import login_cases
from benchmarks.report import chart, headlines

NOTES = [
    "speed_ratio: baseline time / keyproof time, or keyproof rate / baseline rate; above 1 "
    "keyproof is faster.",
    "Sides alternate round by round; medians; 'spread' is (slowest - fastest round) / median.",
    "HTTP logins use benchmarks.loadclient (a minimal HTTP/1.1 client on uvloop): wrk cannot "
    "sign, and a challenge is single-use and bound to its nonce. The same driver sends the same "
    "two bodies to the echo app; the echo app's wrk rate is the framework's own.",
    "On SQLite and Redis the same driver also logs in to benchmarks.minimal_login, a "
    "hand-written login on the same store doing only the work a login cannot skip (no rate "
    "limits, audit, logs, metrics, strict parsing or binding checks, time window, replay "
    "tombstones, policy, DPoP or sessions): the floor on this framework and store, not a "
    "competitor; its rows have no target.",
    "keyproof's HTTP servers run with their rate limits raised by settings (one client IP "
    "sends everything); every check and counter still runs.",
    "Half-peak runs: wrk holds each connection a fixed delay between requests (closed loop); "
    "the login driver starts logins on a fixed schedule and counts latency from it.",
    "The load generator shares the machine's CPUs with the servers.",
]


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    seconds: float
    logins: tuple[int, int, int]
    memory_challenges: int
    memory_stores: tuple[str, ...]
    plan: httpcases.Plan


FULL = Mode(
    "full",
    7,
    0.25,
    (1500, 16, 3),
    5000,
    ("memory", "sqlite", "redis", "postgres"),
    httpcases.Plan(),
)
QUICK = Mode(
    "quick",
    2,
    0.01,
    (40, 4, 1),
    200,
    ("memory", "sqlite"),
    httpcases.Plan(seconds=1, rounds=1, warmup=0, workers=(1,), stores=("sqlite",), guard=False),
)


def run(mode: Mode, http: bool) -> dict[str, Any]:
    started, start_load, start_cpu = datetime.now(UTC), load_average(), cpu_times()
    clock = time.monotonic()
    report: dict[str, Any] = {"schema": 1, "mode": mode.name, "started_at": started.isoformat()}
    report["machine"] = machine_facts()
    report["inprocess"] = inprocess.run_all(mode.rounds, mode.seconds)
    report["logins_inprocess"], skipped = login_cases(*mode.logins)
    report["memory"], skipped_memory = memory.run_all(mode.memory_challenges, mode.memory_stores)
    report["http"], skipped_http = httpcases.run_all(mode.plan) if http else ([], [])
    if not http:
        skipped_http = [{"case": "http", "reason": "--no-http"}]
    report["skipped"] = skipped + skipped_memory + skipped_http
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["seconds"] = round(time.monotonic() - clock, 1)
    report["load_average"] = {"start": start_load, "end": load_average()}
    report["steal_percent"] = cpu_shares(start_cpu, cpu_times())["steal_percent"]
    report["notes"] = NOTES
    report["headlines"] = [dataclasses.asdict(h) for h in headlines(report)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small bounded counts (smoke test)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP cases")
    parser.add_argument("--output", type=Path, help="write the JSON here, and the chart as .png")
    args = parser.parse_args(argv)
    report = run(QUICK if args.quick else FULL, http=not args.no_http)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
        chart(report, args.output.with_suffix(".png"))
    for row in report["headlines"]:
        verdict = "" if row["informational"] else f": {row['met']}"
        print(
            f"{row['path']}: {row['keyproof']} vs {row['baseline']} ({row['ratio']}); "
            f"target {row['target']}{verdict}"
        )
    print(
        f"load average {report['load_average']}; steal {report['steal_percent']}%; "
        f"{report['seconds']} s"
    )
    if not args.output:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
