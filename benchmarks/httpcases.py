"""HTTP cases: keyproof's servers against a bare Starlette app, measured in the same run.

Each comparison pairs a keyproof side with a baseline side loaded by the same client:

- ``challenge``: ``POST /v1/challenge`` (wrk) against ``POST /echo`` of the same body;
- ``login``: challenge + token with a new key each (``benchmarks.loadclient``; wrk
  cannot sign) against the same driver sending the same two bodies to the echo app,
  and, on SQLite and Redis, against the same driver logging in to a minimal login app
  on the same store (``benchmarks.minimal_login``: the work a login cannot skip, by
  hand; there is none for PostgreSQL, whose login rows have only the echo sides); the
  echo app's wrk rate is given next to them, the framework's own request rate;
- ``guard``: ``GET /profile`` behind ``keyproof.guard`` against the same route behind a
  minimal PyJWT backend, the same token (wrk).

With one worker, the login rows also say where the server's CPU time goes
(``benchmarks.timeshare``: keyproof and the minimal login app, SQLite and Redis) and, on
SQLite, what the filesystem adds to the half-peak latency: two new servers, one with
its files in the temporary directory and one on tmpfs, alternating at one rate.

Sides alternate run by run (A, B, A, B, ...). Peak rounds first; then as many rounds
with each side at half of its own median peak rate, where its p50/p99 are what a user
sees short of saturation. ``speed_ratio`` is keyproof's rate / the baseline's. Each run
records the shares of the machine's CPU time left idle (``idle_percent``: near 0, the
machine, not the server, was the limit) and taken by the hypervisor (``steal_percent``).
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import servers, timeshare, wrk
from benchmarks.apps import SCOPE
from benchmarks.harness import cpu_shares, cpu_times
from benchmarks.loadclient import drive
from benchmarks.report import ON_DISK, ON_TMPFS
from keyproof.testing import ServerProcess

Run = Callable[[float, float | None], dict[str, Any]]
CHALLENGE_BODY = json.dumps({"account": "eip155:1:0xd8da6bf26964af9d7eed9e03e53415d37aa96045"})
MINIMAL_LOGIN = "minimal login app, same store"
MINIMAL_LOGIN_STORES = ("sqlite", "redis")
TMPFS = Path("/dev/shm")


@dataclass(frozen=True)
class Plan:
    seconds: float = 3.0
    rounds: int = 3  # a median that one disturbed run cannot move
    warmup: float = 1.0
    workers: tuple[int, ...] = (1, 2)
    stores: tuple[str, ...] = ("sqlite", "redis", "postgres")
    postgres_workers: tuple[int, ...] = (1,)
    guard: bool = True


@dataclass(frozen=True)
class Comparison:
    case: str
    unit: str
    sides: dict[str, Run]  # keyproof first, then the baseline


def _wrk_post(port: int, path: str, body: str) -> Run:
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"content-type": "application/json"}

    def run(seconds: float, rate: float | None) -> dict[str, Any]:
        return wrk.run(url, seconds=seconds, method="POST", body=body, headers=headers, rate=rate)

    return run


def _wrk_get(port: int, path: str, token: str) -> Run:
    url, headers = f"http://127.0.0.1:{port}{path}", {"authorization": f"Bearer {token}"}
    return lambda seconds, rate: wrk.run(url, seconds=seconds, headers=headers, rate=rate)


def _driver(server: ServerProcess, echo: bool) -> Run:
    """The login driver against ``server``, with the server's CPU time per login and the
    driver's own (it runs in this process, on the same CPUs)."""
    port = servers.port_of(server)

    def run(seconds: float, rate: float | None) -> dict[str, Any]:
        before, driver_before = servers.cpu_seconds(server), time.process_time()
        result = drive(port, echo=echo, seconds=seconds, rate=rate)
        used = servers.cpu_seconds(server) - before
        driver_used = time.process_time() - driver_before
        logins = max(result["logins"], 1)
        result["server_cpu_us_per_login"] = round(used / logins * 1e6, 1)
        result["driver_cpu_us_per_login"] = round(driver_used / logins * 1e6, 1)
        return result

    return run


def _median(samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in samples[0].items() if isinstance(v, int | float) and k != "target_rate"]
    merged: dict[str, Any] = {
        key: round(statistics.median(s[key] for s in samples if s[key] is not None), 3)
        for key in keys
        if all(s[key] is not None for s in samples)
    }
    merged["failures"] = sum(s["failures"] for s in samples)
    merged["runs"] = [s["rate"] for s in samples]
    merged["p99_runs"] = [s["p99_ms"] for s in samples if s["p99_ms"] is not None]
    merged["idle_runs"] = [s["idle_percent"] for s in samples]
    merged["steal_runs"] = [s["steal_percent"] for s in samples]
    return merged


def measure(comparison: Comparison, plan: Plan) -> dict[str, dict[str, Any]]:
    """Peak rounds, then as many rounds at half of each side's peak; medians per side."""
    sides = comparison.sides
    if plan.warmup:
        for run in sides.values():
            run(plan.warmup, None)
    peaks = _rounds(sides, plan, dict.fromkeys(sides))
    stalled = [name for name in sides if _median(peaks[name])["rate"] <= 0]
    if stalled:
        raise RuntimeError(f"{comparison.case}: no answer at all from {stalled}")
    halves = _rounds(sides, plan, {name: _median(peaks[name])["rate"] / 2 for name in sides})
    return {
        name: {"peak": _median(peaks[name]), "half_peak": _median(halves[name])} for name in sides
    }


def _rounds(
    sides: dict[str, Run], plan: Plan, rates: dict[str, float | None]
) -> dict[str, list[dict[str, Any]]]:
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(plan.rounds):
        for name, run in sides.items():
            before = cpu_times()
            sample = run(plan.seconds, rates[name])
            sample.update(cpu_shares(before, cpu_times()))
            samples[name].append(sample)
    return samples


def _row(comparison: Comparison, measured: dict[str, dict[str, Any]], **facts: Any) -> Any:
    names = list(measured)
    mine = measured[names[0]]
    baselines = [
        {
            "name": name,
            **measured[name],
            "speed_ratio": round(mine["peak"]["rate"] / measured[name]["peak"]["rate"], 4),
        }
        for name in names[1:]
    ]
    return {
        "case": comparison.case,
        "unit": comparison.unit,
        **facts,
        "keyproof": mine,
        "baselines": baselines,
    }


def _store_rows(plan: Plan, echo: ServerProcess, store: str, workers: int) -> Iterator[Any]:
    echo_port = servers.port_of(echo)
    with ExitStack() as stack:
        server = stack.enter_context(servers.keyproof(store, workers))
        port = servers.port_of(server)
        login_sides = {"keyproof": _driver(server, False), "echo, same driver": _driver(echo, True)}
        if store in MINIMAL_LOGIN_STORES:
            minimal = stack.enter_context(servers.minimal_login(store, workers))
            login_sides[MINIMAL_LOGIN] = _driver(minimal, False)
        challenge = Comparison(
            "challenge",
            "requests/s",
            {
                "keyproof": _wrk_post(port, "/v1/challenge", CHALLENGE_BODY),
                "echo (wrk)": _wrk_post(echo_port, "/echo", CHALLENGE_BODY),
            },
        )
        login = Comparison("login", "logins/s", login_sides)
        challenge_row = _row(challenge, measure(challenge, plan), store=store, workers=workers)
        login_row = _row(login, measure(login, plan), store=store, workers=workers)
        if store in MINIMAL_LOGIN_STORES and workers == 1:
            apps = {"keyproof": server, MINIMAL_LOGIN: minimal}
            login_row["timeshare"] = _timeshares(plan, login_row, apps)
        if store == "sqlite" and workers == 1:
            login_row["files"] = _files_on_tmpfs(plan, login_row["keyproof"]["peak"]["rate"] / 2)
        echo_wrk = challenge_row["baselines"][0]
        login_row["baselines"].append(
            {
                **{k: echo_wrk[k] for k in ("name", "peak", "half_peak")},
                "name": "echo (wrk), requests/s",
                "speed_ratio": round(
                    login_row["keyproof"]["peak"]["rate"] / echo_wrk["peak"]["rate"], 4
                ),
            }
        )
        yield challenge_row
        yield login_row


def _timeshares(plan: Plan, row: dict[str, Any], apps: dict[str, ServerProcess]) -> Any:
    """Where each login app's server CPU goes at peak (``benchmarks.timeshare``), in µs
    per login: the sampled shares times the CPU per login of the unsampled runs."""
    peaks = {"keyproof": row["keyproof"]["peak"]}
    peaks.update((base["name"], base["peak"]) for base in row["baselines"])
    seconds = plan.seconds + 1
    result: dict[str, Any] = {}
    for name, app in apps.items():
        assert app.process is not None
        load = functools.partial(_driver(app, echo=False), seconds, None)
        try:
            shares = timeshare.sample(app.process.pid, seconds, load)
        except RuntimeError as exc:
            return {"skipped": str(exc)}
        cpu = peaks[name]["server_cpu_us_per_login"]
        shares["us_per_login"] = {
            part: round(percent * cpu / 100, 1) for part, percent in shares["percent"].items()
        }
        result[name] = shares
    return result


def _files_on_tmpfs(plan: Plan, rate: float) -> dict[str, Any]:
    """Half-peak logins of two new SQLite servers, alike but for where their files are
    (the system's temporary directory, and tmpfs), alternating at one rate: what the
    filesystem adds to the latency."""
    if not TMPFS.is_dir():
        return {"skipped": f"no tmpfs at {TMPFS}"}
    with (
        servers.keyproof("sqlite", 1) as on_disk,
        servers.keyproof("sqlite", 1, parent=TMPFS) as in_memory,
    ):
        sides = {ON_DISK: _driver(on_disk, False), ON_TMPFS: _driver(in_memory, False)}
        for run in sides.values():
            run(max(plan.warmup, 1), None)
        rounds = _rounds(sides, plan, dict.fromkeys(sides, rate))
        places = {ON_DISK: on_disk.data_dir, ON_TMPFS: in_memory.data_dir}
    return {
        name: {**_median(samples), "filesystem": _filesystem(places[name])}
        for name, samples in rounds.items()
    }


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem ``path`` is on (Linux's ``/proc/mounts``)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    found = {fields[1]: fields[2] for fields in (line.split() for line in mounts)}
    resolved = str(path.resolve())
    under = [m for m in found if resolved == m or resolved.startswith(m.rstrip("/") + "/")]
    return found[max(under, key=len)] if under else None


def _guard_rows(plan: Plan, workers: int) -> Iterator[Any]:
    with servers.keyproof("sqlite", 1) as issuer:
        token, key = servers.token_for(issuer, SCOPE)
        env = {"KEYPROOF_BENCH_ISSUER": issuer.url, "KEYPROOF_BENCH_KEY": key}
        with ExitStack() as stack:
            guarded = stack.enter_context(servers.app("guarded", workers, env))
            pyjwt = stack.enter_context(servers.app("pyjwt_guarded", workers, env))
            for app in (guarded, pyjwt):  # the guard's JWKS fetched, both routes answering
                servers.prime(f"{app.url}/profile", token)
            guard = Comparison(
                "guard_route",
                "requests/s",
                {
                    "keyproof": _wrk_get(servers.port_of(guarded), "/profile", token),
                    "minimal PyJWT backend": _wrk_get(servers.port_of(pyjwt), "/profile", token),
                },
            )
            yield _row(guard, measure(guard, plan), workers=workers)


def run_all(plan: Plan) -> tuple[list[Any], list[Any]]:
    """Rows of every HTTP case, and the cases skipped with their reason."""
    if not wrk.available():
        return [], [{"case": "http", "reason": "wrk not installed (apt-get install wrk)"}]
    rows: list[Any] = []
    skipped: list[Any] = []
    reachable = {}
    for store in plan.stores:
        reason = servers.store_reachable(store)
        if reason is None:
            reachable[store] = True
        else:
            skipped.append({"case": f"http {store}", "reason": reason})
    for workers in plan.workers:
        with servers.app("echo", workers) as echo:
            for store in reachable:
                if store == "postgres" and workers not in plan.postgres_workers:
                    continue
                rows.extend(_store_rows(plan, echo, store, workers))
        if plan.guard:
            rows.extend(_guard_rows(plan, workers))
    return rows, skipped
