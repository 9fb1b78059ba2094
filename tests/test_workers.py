"""Several worker processes share the load of connections opened all at once.

A reverse proxy's keep-alive pool, or any client, may open its connections in one burst.
With one socket shared by the workers, the first worker to wake accepted all of them;
each worker now listens on a socket of its own and the kernel spreads the connections.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from keyproof.server._listeners import WorkerListener, bind_reuse_port
from keyproof.testing import KeyproofServer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a socket per worker is for Linux only"
)

WORKERS = 2
CONNECTIONS = 64
HEALTHZ = (
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {}\r\nConnection: close\r\n\r\n"
)


def _listening_sockets(port: int) -> int:
    """Sockets in the LISTEN state on ``port``, from ``/proc/net/tcp``."""
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                _, local, _, state, *_ = row.split()
                found += local.endswith(f":{port:04X}") and state == "0A"
    return found


def wait_for_listeners(port: int, count: int) -> None:
    deadline = time.monotonic() + 30
    while _listening_sockets(port) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{_listening_sockets(port)} sockets listen on port {port}, not {count}")
        time.sleep(0.1)


def _burst(port: int, request_id: str) -> None:
    """Open every connection first, then send one request on each and read its answer."""
    connections = [
        socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CONNECTIONS)
    ]
    try:
        for conn in connections:
            conn.sendall(HEALTHZ.format(request_id).encode())
        for conn in connections:
            assert conn.recv(64).startswith(b"HTTP/1.1 200 ")
    finally:
        for conn in connections:
            conn.close()


def _requests_per_worker(log: str, request_id: str) -> collections.Counter[int]:
    served: collections.Counter[int] = collections.Counter()
    for line in log.splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("logger") == "keyproof.access" and entry.get("request_id") == request_id:
            served[entry["pid"]] += 1
    return served


def _assert_spread(served: collections.Counter[int]) -> None:
    assert sum(served.values()) == CONNECTIONS
    # The kernel picks a socket by a hash of each connection's addresses: out of 64,
    # fewer than 16 for either of two workers has odds below 1 in 10,000.
    assert len(served) == WORKERS and min(served.values()) >= 16, served


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_connections_opened_at_once_spread_over_every_worker(tmp_path: Path, server_log):
    server = KeyproofServer(tmp_path / "data", args=["--workers", str(WORKERS)])
    with server:
        server_log.append(server.log_path)
        port = int(server.url.rsplit(":", 1)[1])
        wait_for_listeners(port, WORKERS)  # a socket of its own per worker, each started
        _burst(port, "first")
        time.sleep(0.2)  # the access lines of the burst written
        victim = next(iter(_requests_per_worker(server.log(), "first")))
        os.kill(victim, signal.SIGKILL)
        _wait_until_gone(victim)
        wait_for_listeners(port, WORKERS)  # its replacement, on a socket of its own
        _burst(port, "after-restart")
    log = server.log()  # read once the server has stopped
    _assert_spread(_requests_per_worker(log, "first"))
    after = _requests_per_worker(log, "after-restart")
    _assert_spread(after)
    assert victim not in after


def test_a_worker_listener_becomes_a_socket_of_its_own_where_it_is_unpickled():
    with bind_reuse_port("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        first = pickle.loads(pickle.dumps(WorkerListener("127.0.0.1", port)))
        second = pickle.loads(pickle.dumps(WorkerListener("127.0.0.1", port)))
        with first, second:
            assert isinstance(first, socket.socket) and first.fileno() != second.fileno()
            assert first.getsockname() == second.getsockname() == ("127.0.0.1", port)
            assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_a_port_held_without_reuse_refuses_the_worker_sockets():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            bind_reuse_port("127.0.0.1", other.getsockname()[1]).close()
