"""`make bench` in its reduced mode writes valid output, and the README table follows it.

No timing is asserted: only that every case ran against its baselines (the HTTP login
against the minimal login app too) and that the JSON, the chart and the README table
have their shape. The HTTP part needs Debian's wrk: it is
skipped with that reason where wrk is missing, unless ``KEYPROOF_REQUIRE_WRK=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import servers

from test_workers import wait_for_listeners

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
IN_PROCESS_CASES = {
    "siwe_parse_verify",
    "keccak256_330B",
    "siws_parse_verify",
    "didkey_ed25519_parse_verify",
    "guard_authenticate",
    "access_token_verify",
    "client_dpop_proof",
    "client_personal_sign",
    "eip712_digest",
    "contract_check_call_data",
}
WRK = shutil.which("wrk") is not None
BEGIN, END = "<!-- benchmarks:begin (python -m benchmarks.readme", "<!-- benchmarks:end -->"
MINIMAL_LOGIN = "minimal login app, same store"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    output = tmp_path_factory.mktemp("bench") / "latest.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)]
    if not WRK:
        command.append("--no-http")
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(output.read_text()), output


def test_reduced_mode_writes_machine_facts(run: tuple[dict[str, Any], Path]):
    report, output = run
    assert report["mode"] == "quick"
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["packages"]["keyproof"]
    assert report["machine"]["python"].count(".") == 2
    assert all(len(report["load_average"][when]) == 3 for when in ("start", "end"))
    assert 0 <= report["steal_percent"] <= 100  # Linux: /proc/stat has a steal counter
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_in_process_case_ran_against_its_baselines(run: tuple[dict[str, Any], Path]):
    report, _ = run
    cases = {row["case"]: row for row in report["inprocess"]}
    assert set(cases) >= IN_PROCESS_CASES
    for row in cases.values():
        assert row["keyproof"]["us"] > 0
        assert row["baselines"], row["case"]
        for base in row["baselines"]:
            assert base["us"] > 0 and base["speed_ratio"] > 0
    siwe = {base["name"].split(" ")[0] for base in cases["siwe_parse_verify"]["baselines"]}
    assert {"siwe-py", "eth-account", "floor:"} <= siwe
    memory = {row["store"]: row for row in report["memory"]}
    assert memory["memory"]["bytes_per_challenge"] > 0


def test_in_process_logins_on_each_store(run: tuple[dict[str, Any], Path]):
    report, _ = run
    cases = {row["case"]: row for row in report["logins_inprocess"]}
    skipped = {row["case"]: row["reason"] for row in report["skipped"]}
    assert "login_sqlite_store" in cases
    for store, switch in (
        ("redis", "KEYPROOF_REQUIRE_REDIS"),
        ("postgres", "KEYPROOF_REQUIRE_POSTGRES"),
    ):
        case = f"login_{store}_store"
        assert (case in cases) != (case in skipped), case
        if os.environ.get(switch) == "1":
            assert case in cases, skipped
    for row in cases.values():
        assert row["logins_per_second"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_http_cases_with_wrk(run: tuple[dict[str, Any], Path]):
    if not WRK:
        if os.environ.get("KEYPROOF_REQUIRE_WRK") == "1":
            pytest.fail("wrk is not installed, and KEYPROOF_REQUIRE_WRK=1", pytrace=False)
        pytest.skip("wrk is not installed (apt-get install wrk)")
    report, _ = run
    rows = {(row["case"], row["store"], row["workers"]): row for row in report["http"]}
    assert {("challenge", "sqlite", 1), ("login", "sqlite", 1)} <= set(rows)
    for row in rows.values():
        for side in (row["keyproof"], *row["baselines"]):
            assert side["peak"]["rate"] > 0
            assert side["peak"]["p99_ms"] >= side["peak"]["p50_ms"] > 0
            assert side["half_peak"]["rate"] > 0
            for load in ("peak", "half_peak"):
                for shares in ("idle_runs", "steal_runs"):
                    runs = side[load][shares]
                    assert runs and all(0 <= share <= 100 for share in runs), (shares, runs)
    login = rows[("login", "sqlite", 1)]
    assert login["keyproof"]["peak"]["failures"] == 0
    baselines = {base["name"]: base for base in login["baselines"]}
    assert {"echo, same driver", MINIMAL_LOGIN, "echo (wrk), requests/s"} <= set(baselines)
    minimal = baselines[MINIMAL_LOGIN]
    assert minimal["peak"]["failures"] == 0 and minimal["speed_ratio"] > 0
    [headline] = [h for h in report["headlines"] if "minimal login app" in h["path"]]
    assert headline["informational"] and headline["met"] is None
    assert headline["path"].endswith("sqlite, 1 worker")
    # The server's CPU time per login, read from /proc, for each side the driver loads.
    for side in (login["keyproof"], minimal, baselines["echo, same driver"]):
        assert side["peak"]["server_cpu_us_per_login"] > 0
        assert side["peak"]["driver_cpu_us_per_login"] > 0
    [cpu] = [h for h in report["headlines"] if h["path"].startswith("server CPU per login")]
    assert cpu["informational"] and cpu["keyproof"].endswith(" µs")


def _sqlite_login(run: tuple[dict[str, Any], Path]) -> Any:
    """The report's SQLite login row (skipped where wrk is missing: no HTTP cases)."""
    if not WRK:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    return next(r for r in run[0]["http"] if (r["case"], r["store"]) == ("login", "sqlite"))


def test_where_a_login_s_server_time_goes(run: tuple[dict[str, Any], Path]):
    login = _sqlite_login(run)
    sides = login["timeshare"]
    if "skipped" in sides:
        if os.environ.get("KEYPROOF_REQUIRE_PROFILER") == "1":
            pytest.fail(f"{sides['skipped']}, and KEYPROOF_REQUIRE_PROFILER=1", pytrace=False)
        pytest.skip(sides["skipped"])
    assert set(sides) == {"keyproof", MINIMAL_LOGIN}
    for name, side in sides.items():
        assert side["samples"] > 0
        assert 99 <= sum(side["percent"].values()) <= 101
        cpu = (login["keyproof"] if name == "keyproof" else _minimal(login))["peak"]
        spent = sum(side["us_per_login"].values())
        assert abs(spent - cpu["server_cpu_us_per_login"]) <= 0.02 * spent + 1
    # keyproof's own modules are sampled as its own Python; the minimal app's as its own.
    assert sides["keyproof"]["percent"]["app's own Python"] > 0
    assert sides[MINIMAL_LOGIN]["percent"]["app's own Python"] > 0


def test_half_peak_logins_with_files_on_tmpfs_and_on_disk(run: tuple[dict[str, Any], Path]):
    files = _sqlite_login(run)["files"]
    if "skipped" in files:
        assert not Path("/dev/shm").is_dir(), files
        pytest.skip(files["skipped"])
    assert files["files on tmpfs"]["filesystem"] == "tmpfs"
    assert files["files on disk"]["filesystem"]
    for side in files.values():
        assert side["failures"] == 0 and side["rate"] > 0
        assert side["p99_ms"] >= side["p50_ms"] > 0
    [row] = [h for h in run[0]["headlines"] if h["path"].endswith("files on tmpfs")]
    assert row["informational"] and row["keyproof"].endswith(" ms")


def _minimal(login: dict[str, Any]) -> Any:
    return next(base for base in login["baselines"] if base["name"] == MINIMAL_LOGIN)


def test_readme_table_is_generated_from_the_json(run: tuple[dict[str, Any], Path], tmp_path: Path):
    report, output = run
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    copy = tmp_path / "README.md"
    copy.write_text(text)
    subprocess.run(
        [sys.executable, "-m", "benchmarks.readme", str(output), "--readme", str(copy)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    rewritten = copy.read_text()
    before, _, rest = rewritten.partition(BEGIN)
    block, _, after = rest.partition(END)
    assert before == text.partition(BEGIN)[0] and after == text.partition(END)[2]
    assert "| path | keyproof | baseline | ratio | spread | target | met |" in block
    assert "quick mode" in block
    assert f"the hypervisor took {report['steal_percent']}% of the CPU time" in block
    if any("keyproof" in row.get("timeshare", {}) for row in report["http"]):
        assert "| part | keyproof, sqlite | minimal app, sqlite |" in block
        assert "| app's own Python | " in block and "| all | " in block
    for headline in report["headlines"]:
        assert f"| {headline['path']} |" in block
        if headline["informational"]:  # no target: the row claims nothing
            [line] = [x for x in block.splitlines() if x.startswith(f"| {headline['path']} |")]
            assert line.endswith("| none (informational) | — |"), line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a socket per worker is Linux's")
def test_baseline_apps_place_their_workers_as_keyproof_does():
    # With uvicorn's one shared socket a burst of connections may all reach one worker,
    # and a two-worker baseline would be measured on one: each worker listens on its own.
    with servers.app("echo", 2) as echo:
        wait_for_listeners(servers.port_of(echo), 2)
