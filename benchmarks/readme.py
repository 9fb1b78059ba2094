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
from benchmarks.timeshare import PARTS

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
    return "\n".join(lines + _timeshare_table(report))


def _timeshare_table(report: dict[str, Any]) -> list[str]:
    """Where each login app's server CPU goes, per part, from the login rows' samples."""
    columns: list[tuple[str, dict[str, Any]]] = []
    for row in report["http"]:
        for name, side in row.get("timeshare", {}).items():
            if name != "skipped":
                app = "keyproof" if name == "keyproof" else "minimal app"
                columns.append((f"{app}, {row['store']}", side))
    if not columns:
        return []
    samples = ", ".join(str(side["samples"]) for _, side in columns)
    lines = [
        "",
        "Where the server's CPU time per login goes at peak, one worker, in µs: each part's "
        "share of `py-spy record --native` samples of the server (" + samples + " samples) "
        "times its CPU time per login above (`benchmarks/timeshare.py` says what each part "
        "holds).",
        "",
        "| part | " + " | ".join(title for title, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for part in PARTS:
        cells = [f"{side['us_per_login'][part]:.0f}" for _, side in columns]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    totals = [f"{sum(side['us_per_login'].values()):.0f}" for _, side in columns]
    lines.append("| all | " + " | ".join(totals) + " |")
    return lines


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
