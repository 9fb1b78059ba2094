"""``wrk`` runs, bounded in time, reporting rate and latency percentiles as JSON.

Peak: ``connections`` keep-alive connections, each sending as soon as it has its answer.
A set rate: wrk's Lua ``delay()`` holds each connection for a fixed number of
milliseconds before its next request, so the offered rate is about connections /
delay (wrk has no open-loop mode; wrk2 is not packaged by Debian). Latencies then
exclude the wait, and the achieved rate is reported next to the one asked for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DONE = """
function done(summary, latency, requests)
  io.write(string.format(
    '\\nKEYPROOF-BENCH {"requests": %d, "duration_us": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _script(method: str, body: str | None, headers: dict[str, str], delay_ms: int | None) -> str:
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if delay_ms is not None:
        lines.append(f"function delay() return {delay_ms} end")
    return "\n".join(lines) + DONE


def paced(rate: float) -> tuple[int, int]:
    """Connections and per-connection delay (ms) offering about ``rate`` requests/s."""
    connections = max(1, min(200, round(rate * 0.01)))
    return connections, max(1, round(connections * 1000 / rate))


def run(
    url: str,
    *,
    seconds: float,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    rate: float | None = None,
) -> dict[str, Any]:
    """One wrk run; ``rate`` paces it, else it runs at peak."""
    delay_ms = None
    if rate is not None:
        connections, delay_ms = paced(rate)
    script = _script(method, body, headers or {}, delay_ms)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    duration = max(1, round(seconds))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    try:
        finished = subprocess.run(
            [*command, "-s", handle.name, url],
            capture_output=True,
            text=True,
            timeout=duration + 30,
            check=True,
        )
    finally:
        Path(handle.name).unlink()
    line = next(x for x in finished.stdout.splitlines() if x.startswith("KEYPROOF-BENCH "))
    raw = json.loads(line.split(" ", 1)[1])
    elapsed = raw["duration_us"] / 1e6
    return {
        "rate": round(raw["requests"] / elapsed, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "failures": raw["status_errors"] + raw["socket_errors"],
        "connections": connections,
        "target_rate": rate,
    }
