"""Run a benchmark app under uvicorn with its workers placed as ``keyproof serve`` places them.

``python -m benchmarks.workers MODULE:APP PORT WORKERS``. One worker runs in this
process; several each listen on a socket of their own (``SO_REUSEPORT``, through
keyproof's own :func:`~keyproof.server._listeners.serve_workers`). uvicorn's
``--workers`` shares one socket instead, and a load generator that opens its
connections at once then lands all of them on one worker: every side of a two-worker
comparison must spread its connections alike.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

from keyproof.server._listeners import serve_workers

_TARGET = "KEYPROOF_BENCH_APP"
_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "log_level": "warning",
}


def app() -> Any:
    """The app named by ``KEYPROOF_BENCH_APP``: the factory each worker process imports."""
    return import_from_string(os.environ[_TARGET])


def main(argv: list[str]) -> None:
    target, port, workers = argv[0], int(argv[1]), int(argv[2])
    if workers == 1:
        uvicorn.run(import_from_string(target), host="127.0.0.1", port=port, **_OPTIONS)
        return
    os.environ[_TARGET] = target
    serve_workers(
        uvicorn, "benchmarks.workers:app", host="127.0.0.1", port=port, workers=workers, **_OPTIONS
    )


if __name__ == "__main__":
    main(sys.argv[1:])
