"""The headline rows (each with its target) and the PNG chart of every speed ratio.

A speed ratio is the baseline's time / keyproof's time (in-process), or keyproof's
rate / the baseline's (HTTP): above 1, keyproof is faster. Informational rows (keyproof
against the minimal login app) have no target: they say what keyproof's extra work
costs, and are listed only when measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOWER_BOUND = 1 / 1.5  # "at most 1.5x the baseline's time", as a speed ratio
NO_TARGET = "none (informational)"
ECHO_DRIVER, ECHO_WRK = "echo, same driver", "echo (wrk), requests/s"
MINIMAL_LOGIN = "minimal login app, same store"
ON_DISK, ON_TMPFS = "files on disk", "files on tmpfs"


@dataclass(frozen=True)
class Headline:
    path: str
    keyproof: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: not measured in this run, or informational
    spread: str = "—"  # (slowest - fastest round) / median, the noisier side's
    informational: bool = False  # no target: ``met`` is None, and claims nothing


def _spread(*series: list[float]) -> str:
    """The largest relative range of rounds among ``series`` (each a side's samples)."""
    spreads = [(max(v) - min(v)) / statistics.median(v) for v in series if v and min(v) > 0]
    return f"{max(spreads):.0%}" if spreads else "—"


def _inprocess(report: dict[str, Any], case: str, prefix: str) -> tuple[Any, Any] | None:
    for row in report.get("inprocess", []):
        if row["case"] == case:
            for base in row["baselines"]:
                if base["name"].startswith(prefix):
                    return row["keyproof"], base
    return None


def _http(report: dict[str, Any], case: str, workers: int, store: str | None = None) -> Any:
    for row in report.get("http", []):
        if row["case"] == case and row["workers"] == workers and row.get("store") == store:
            return row
    return None


def _baseline(row: dict[str, Any], name: str) -> Any:
    return next((base for base in row["baselines"] if base["name"] == name), None)


def _time_row(
    report: dict[str, Any], path: str, case: str, prefix: str, bound: float, target: str
) -> Headline:
    found = _inprocess(report, case, prefix)
    if found is None:
        return Headline(path, "—", prefix, "—", target, None)
    mine, base = found
    ratio = base["speed_ratio"]
    return Headline(
        path,
        f"{mine['us']:.0f} µs",
        f"{base['name']} {base['us']:.0f} µs",
        f"{ratio:.3g}×",
        target,
        ratio >= bound,
        f"{max(mine['spread'], base['spread']):.0%}",
    )


def _login_rows(report: dict[str, Any]) -> Iterator[Headline]:
    for store in ("sqlite", "redis"):
        one = _http(report, "login", 1, store)
        if one is None:
            yield Headline(f"login over HTTP, {store}, 1 worker", "—", "echo", "—", "≥ 0.2×", None)
            continue
        echo = _baseline(one, ECHO_WRK)
        ratio = one["keyproof"]["peak"]["rate"] / echo["peak"]["rate"]
        yield Headline(
            f"login over HTTP, {store}, 1 worker",
            f"{one['keyproof']['peak']['rate']:.0f} logins/s",
            f"echo (wrk) {echo['peak']['rate']:.0f} req/s",
            f"{ratio:.3g}×",
            "≥ 0.2×",
            ratio >= 0.2,
            _spread(one["keyproof"]["peak"]["runs"], echo["peak"]["runs"]),
        )
        half = one["keyproof"]["half_peak"]
        base_half = _baseline(one, ECHO_DRIVER)["half_peak"]
        yield Headline(
            f"login p99 at half of peak, {store}, 1 worker",
            f"{half['p99_ms']:.1f} ms",
            f"echo, same driver {base_half['p99_ms']:.1f} ms",
            "—",
            "≤ 5 ms",
            half["p99_ms"] <= 5,
            _spread(half.get("p99_runs", []), base_half.get("p99_runs", [])),
        )
        two = _http(report, "login", 2, store)
        if two is not None:
            scaling = two["keyproof"]["peak"]["rate"] / one["keyproof"]["peak"]["rate"]
            echo_two = _baseline(two, ECHO_WRK)
            echo_scaling = echo_two["peak"]["rate"] / echo["peak"]["rate"]
            yield Headline(
                f"login, 2 workers ÷ 1, {store}",
                f"{scaling:.2f}×",
                f"echo (wrk) {echo_scaling:.2f}×",
                "—",
                "≥ echo's own scaling",
                scaling >= echo_scaling,
                _spread(
                    *(r["peak"]["runs"] for r in (one["keyproof"], two["keyproof"], echo)),
                    echo_two["peak"]["runs"],
                ),
            )


def _minimal_login_rows(report: dict[str, Any]) -> Iterator[Headline]:
    """keyproof's logins against the minimal login app's, per store and worker count."""
    for store in ("sqlite", "redis"):
        for workers in (1, 2):
            row = _http(report, "login", workers, store)
            base = None if row is None else _baseline(row, MINIMAL_LOGIN)
            if base is None:
                continue
            mine = row["keyproof"]["peak"]
            yield Headline(
                f"login over HTTP vs a minimal login app (same store), {store}, "
                f"{workers} worker{'s' if workers > 1 else ''}",
                f"{mine['rate']:.0f} logins/s",
                f"minimal login app {base['peak']['rate']:.0f} logins/s",
                f"{base['speed_ratio']:.3g}×",
                NO_TARGET,
                None,
                _spread(mine["runs"], base["peak"]["runs"]),
                informational=True,
            )
            if workers == 1:
                yield _cpu_row(row, base, store)


def _cpu_row(row: dict[str, Any], minimal: dict[str, Any], store: str) -> Headline:
    """The server's CPU time per login at peak: keyproof's, the minimal app's, and the echo
    app's for the same two requests (the framework's share of a login)."""
    key = "server_cpu_us_per_login"
    mine, floor = row["keyproof"]["peak"].get(key), minimal["peak"].get(key)
    echo = _baseline(row, ECHO_DRIVER)["peak"].get(key)
    if mine is None or floor is None or echo is None:
        return Headline(f"server CPU per login, {store}", "—", "—", "—", NO_TARGET, None)
    return Headline(
        f"server CPU per login, {store}, 1 worker",
        f"{mine:.0f} µs",
        f"minimal login app {floor:.0f} µs; echo app, the same two requests {echo:.0f} µs",
        f"{floor / mine:.3g}×",
        NO_TARGET,
        None,
        informational=True,
    )


def _files_rows(report: dict[str, Any]) -> Iterator[Headline]:
    """keyproof's half-peak p99 with its files on tmpfs against on disk, when measured."""
    row = _http(report, "login", 1, "sqlite")
    files = {} if row is None else row.get("files", {})
    if ON_TMPFS not in files:
        return
    disk, memory = files[ON_DISK], files[ON_TMPFS]
    yield Headline(
        "login p99 at half of peak, sqlite, 1 worker, files on tmpfs",
        f"{memory['p99_ms']:.1f} ms",
        f"the same server with its files on {disk['filesystem']} {disk['p99_ms']:.1f} ms",
        "—",
        NO_TARGET,
        None,
        _spread(memory["p99_runs"], disk["p99_runs"]),
        informational=True,
    )


def _guard_http(report: dict[str, Any]) -> Headline:
    row = _http(report, "guard_route", 1)
    if row is None:
        return Headline("guard over HTTP, 1 worker", "—", "PyJWT", "—", "≥ 1×", None)
    base = row["baselines"][0]
    return Headline(
        "guard over HTTP, 1 worker",
        f"{row['keyproof']['peak']['rate']:.0f} req/s",
        f"{base['name']} {base['peak']['rate']:.0f} req/s",
        f"{base['speed_ratio']:.3g}×",
        "≥ 1×",
        base["speed_ratio"] >= 1,
        _spread(row["keyproof"]["peak"]["runs"], base["peak"]["runs"]),
    )


def _memory(report: dict[str, Any]) -> Headline:
    for row in report.get("memory", []):
        if row["store"] == "memory":
            size = row["bytes_per_challenge"]
            return Headline(
                "memory store, per outstanding challenge",
                f"{size:.0f} B",
                "—",
                "—",
                "≤ 512 B",
                size <= 512,
            )
    return Headline("memory store, per outstanding challenge", "—", "—", "—", "≤ 512 B", None)


def headlines(report: dict[str, Any]) -> list[Headline]:
    time_rows: list[tuple[str, str, str, float, str]] = [
        (
            "guard, per request (`authenticate`)",
            "guard_authenticate",
            "pynacl",
            SLOWER_BOUND,
            "≤ 1.5× pynacl's time",
        ),
        (
            "guard, per request (`authenticate`)",
            "guard_authenticate",
            "minimal PyJWT",
            1.0,
            "faster than PyJWT",
        ),
        ("`verify_access_token`", "access_token_verify", "joserfc", 1.0, "faster than joserfc"),
        (
            "SIWE parse + verify",
            "siwe_parse_verify",
            "floor",
            SLOWER_BOUND,
            "≤ 1.5× the floor's time",
        ),
        ("SIWE parse + verify", "siwe_parse_verify", "siwe-py (ABNF", 60.0, "≥ 60× faster"),
        (
            "SIWS parse + verify",
            "siws_parse_verify",
            "pynacl",
            SLOWER_BOUND,
            "≤ 1.5× pynacl's time",
        ),
        (
            "did:key ed25519 parse + verify",
            "didkey_ed25519_parse_verify",
            "pynacl",
            SLOWER_BOUND,
            "≤ 1.5× pynacl's time",
        ),
    ]
    return [
        *_login_rows(report),
        *_minimal_login_rows(report),
        *_files_rows(report),
        _guard_http(report),
        *(_time_row(report, *spec) for spec in time_rows),
        _memory(report),
    ]


def ratios(report: dict[str, Any]) -> list[tuple[str, float]]:
    """Every (label, speed ratio) of the run, in-process then HTTP."""
    found = [
        (f"{row['case']} vs {base['name']}", base["speed_ratio"])
        for row in report.get("inprocess", [])
        for base in row["baselines"]
    ]
    for row in report.get("http", []):
        where = f"{row.get('store') or 'guard'} {row['workers']}w"
        found += [
            (f"{row['case']} ({where}) vs {base['name']}", base["speed_ratio"])
            for base in row["baselines"]
        ]
    return found


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = ratios(report)
    labels, values = [x[0][:64] for x in found], [x[1] for x in found]
    figure, axes = plt.subplots(figsize=(12, 0.32 * len(found) + 1.6))
    colours = ["tab:green" if v >= 1 else "tab:red" for v in values]
    axes.barh(range(len(found)), values, color=colours)
    for index, value in enumerate(values):
        axes.annotate(
            f"{value:.3g}", (value, index), xytext=(3, -3), textcoords="offset points", fontsize=6
        )
    axes.set_yticks(range(len(found)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    load = report["load_average"]
    axes.set_title(
        "keyproof speed ÷ baseline's (above 1: keyproof faster); "
        f"load {load['start'][0]} → {load['end'][0]} on {report['machine']['cpu_count']} CPUs",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
