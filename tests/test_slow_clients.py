"""Slow clients cannot hold a real server: late headers and late bodies are cut off with
``408`` and the connection closed, headers beyond ``max_header_bytes`` are refused with
``431``, and connections beyond ``max_connections`` are refused.

Raw sockets against ``keyproof serve`` on 127.0.0.1. Every socket read is bounded by
``READ_BOUND``, far beyond the deadlines under test: a server that never cuts a slow
client off fails the test when the bound expires instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import httpx
import pytest

from keyproof.testing import KeyproofServer

READ_BOUND = 15.0
HALF_OPEN = 40
TIMEOUTS = {"KEYPROOF_HEADER_TIMEOUT": "1", "KEYPROOF_BODY_TIMEOUT": "1"}
ACCOUNT = "eip155:1:0xd8da6bf26964af9d7eed9e03e53415d37aa96045"
MAX_HEADER_BYTES = 16 * 1024  # the default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    from conftest import SERVER_LOGS

    env = {**TIMEOUTS, "KEYPROOF_MAX_CONNECTIONS": "200"}
    with KeyproofServer(tmp_path_factory.mktemp("slow") / "data", env=env) as running:
        SERVER_LOGS.append(running.log_path)
        yield running


def connect(server: KeyproofServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_BOUND)
    sock.settimeout(READ_BOUND)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_closed(sock: socket.socket) -> None:
    with suppress(ConnectionResetError):
        assert sock.recv(1) == b""


def assert_refused(sock: socket.socket, status: int, reason: str, says: str) -> None:
    """A JSON error ``status``/``reason`` whose description holds ``says``, then close."""
    answered, headers, body = read_response(sock)
    assert answered == status
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)
    assert error["reason"] == reason
    assert says in error["error_description"]
    assert_closed(sock)


def assert_cut_off(sock: socket.socket, phase: str) -> None:
    assert_refused(sock, 408, "request_timeout", phase)


HEAD = b"POST /v1/challenge HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"


def test_half_open_requests_are_cut_off_after_the_header_timeout(server: KeyproofServer):
    """The slowloris shape: many requests whose headers never end."""
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(server)) for _ in range(HALF_OPEN)]
        for sock in socks:
            sock.sendall(HEAD)
        for sock in socks:
            assert_cut_off(sock, "headers")


def test_an_idle_connection_is_cut_off_after_the_header_timeout(server: KeyproofServer):
    with connect(server) as sock:
        assert_cut_off(sock, "headers")


def test_a_body_that_stalls_is_cut_off_with_request_timeout(server: KeyproofServer):
    with connect(server) as sock:
        sock.sendall(HEAD + b"content-length: 100\r\n\r\n" + b'{"account": "eip')
        assert_cut_off(sock, "body")


def test_slow_headers_on_a_kept_alive_connection_are_cut_off(server: KeyproofServer):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert_cut_off(sock, "headers")


def test_a_client_within_the_deadlines_is_served(server: KeyproofServer):
    body = json.dumps({"account": ACCOUNT}).encode()
    with connect(server) as sock:
        sock.sendall(HEAD)
        time.sleep(0.2)
        sock.sendall(b"content-length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.2)
        sock.sendall(body[10:])
        status, headers, _ = read_response(sock)
    assert status == 201
    assert headers["cache-control"] == "no-store"


def assert_too_large(sock: socket.socket) -> None:
    assert_refused(sock, 431, "headers_too_large", str(MAX_HEADER_BYTES))


def test_headers_over_the_cap_are_refused(server: KeyproofServer):
    with connect(server) as sock:
        sock.sendall(HEAD + b"x-big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n")
        assert_too_large(sock)


def test_a_header_that_grows_past_the_cap_piece_by_piece_is_refused(server: KeyproofServer):
    """The pieces each fit; their sum does not. The header never ends: the cap, not the
    deadline, ends it."""
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nx-big: ")
        for _ in range(MAX_HEADER_BYTES // 4096 + 1):
            time.sleep(0.02)
            sock.sendall(b"a" * 4096)
        assert_too_large(sock)
    assert httpx.get(f"{server.url}/healthz", timeout=READ_BOUND).status_code == 200


def test_headers_just_under_the_cap_with_their_body_in_one_write_are_served(
    server: KeyproofServer,
):
    body = json.dumps({"account": ACCOUNT}).encode()
    head = HEAD + b"content-length: %d\r\n" % len(body)
    padding = MAX_HEADER_BYTES - len(head) - len(b"x-pad: \r\n\r\n")
    request = head + b"x-pad: " + b"a" * padding + b"\r\n\r\n"
    assert len(request) == MAX_HEADER_BYTES
    with connect(server) as sock:
        sock.sendall(request + body)
        status, _, response = read_response(sock)
    assert status == 201, response
    assert json.loads(response)["account"].lower() == ACCOUNT


def test_the_cap_applies_again_to_the_next_request_on_a_kept_alive_connection(
    server: KeyproofServer,
):
    with connect(server) as sock:
        for _ in range(3):  # together over the cap, each well under it
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nx-pad: ")
            sock.sendall(b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n")
            assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nx-big: ")
        sock.sendall(b"a" * MAX_HEADER_BYTES + b"\r\n\r\n")
        assert_too_large(sock)


def test_connections_beyond_the_cap_are_refused_until_slow_ones_are_cut(tmp_path: Path, server_log):
    env = {**TIMEOUTS, "KEYPROOF_MAX_CONNECTIONS": "5"}
    with KeyproofServer(tmp_path / "data", env=env) as server, ExitStack() as stack:
        server_log.append(server.log_path)
        idle = [stack.enter_context(connect(server)) for _ in range(5)]
        # Accepted in order: the server holds the five idle ones when this one is read.
        refused = httpx.get(f"{server.url}/healthz", timeout=READ_BOUND)
        assert refused.status_code == 503
        for sock in idle:
            assert_cut_off(sock, "headers")
        assert httpx.get(f"{server.url}/healthz", timeout=READ_BOUND).status_code == 200
