"""The benchmark harness runs and reports every case as JSON (timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_report_json(tmp_path: Path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    cases = {row["case"]: row for row in report["results"]}
    expected = {"keccak256", "eip191_recover", "access_token_verify", "eip712_digest"}
    expected |= {"redeem_pipeline_memory_store", "client_personal_sign", "client_dpop_proof"}
    assert expected | {"contract_check_call_data"} <= set(cases)
    skipped = {row["case"]: row["reason"] for row in report["skipped"]}
    for store in ("sqlite", "redis", "postgres"):
        case = f"login_{store}_store"
        assert (case in cases) != (case in skipped), case
        if case in cases:
            assert cases[case]["logins_per_second"] > 0
            assert 0 < cases[case]["p50_ms"] <= cases[case]["p99_ms"]
    assert "login_sqlite_store" in cases
    for store, switch in (
        ("redis", "KEYPROOF_REQUIRE_REDIS"),
        ("postgres", "KEYPROOF_REQUIRE_POSTGRES"),
    ):
        if os.environ.get(switch) == "1":
            assert f"login_{store}_store" in cases, skipped
    for row in cases.values():
        assert row["keyproof_us"] > 0
        if "baseline_us" in row:
            assert abs(row["speedup"] - row["baseline_us"] / row["keyproof_us"]) < 0.05
