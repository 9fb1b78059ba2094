"""Rewrite README.md's performance table from a benchmark JSON file.

    python -m benchmarks.readme benchmarks/results/latest.json [--readme README.md]

Only the lines between the two markers change; everything else is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import headlines

BEGIN = "<!-- benchmarks:begin (python -m benchmarks.readme; do not edit by hand) -->"
END = "<!-- benchmarks:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
MET = {True: "yes", False: "**no**", None: "not measured"}
INFORMATIONAL = "—"  # a row with no target claims nothing


def table(report: dict[str, Any]) -> str:
    load = report["load_average"]
    machine = report["machine"]
    lines = [
        f"Measured {report['started_at'][:10]} with `make bench` ({report['mode']} mode) on "
        f"{machine['cpu_count']} CPUs ({machine['processor']}), Python {machine['python']}; "
        f"load average {load['start'][0]} at the start, {load['end'][0]} at the end"
        f"{_steal(report)}. "
        "Ratios are speed ratios: the baseline's time ÷ keyproof's, or keyproof's rate ÷ "
        "the baseline's; above 1, keyproof is faster. Spread: the slowest round (or run) "
        "minus the fastest, over the median, for the noisier side: how much to trust a row.",
        "",
        "| path | keyproof | baseline | ratio | spread | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {h.path} | {h.keyproof} | {h.baseline} | {h.ratio} | {h.spread} | {h.target} "
        f"| {INFORMATIONAL if h.informational else MET[h.met]} |"
        for h in headlines(report)
    ]
    return "\n".join(lines)


def _steal(report: dict[str, Any]) -> str:
    steal = report.get("steal_percent")  # absent from reports written before it was kept
    if steal is None:
        return ""
    return f"; the hypervisor took {steal}% of the CPU time (steal) over the run"


def rewrite(text: str, report: dict[str, Any]) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table(report) + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="a JSON file written by python -m benchmarks")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    report = json.loads(args.results.read_text())
    args.readme.write_text(rewrite(args.readme.read_text(), report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
