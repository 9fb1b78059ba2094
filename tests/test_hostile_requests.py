"""Client input a real server must refuse with a 4xx: never a 500, never a traceback.

One ``keyproof serve`` on 127.0.0.1 for the module; its log is checked at the end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from keyproof._httpio import MAX_JSON_DEPTH, _parse_object
from keyproof.errors import InvalidRequest
from keyproof.testing import KeyproofServer

from conftest import SERVER_LOGS
from test_guard import CLIENT_ID, CLIENT_SECRET
from test_slow_clients import read_response
from wallets import EthWallet

ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    digest = hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
    env = {"KEYPROOF_INTROSPECTION_CLIENTS": f"{CLIENT_ID}:{digest}"}
    data_dir = tmp_path_factory.mktemp("hostile")
    with KeyproofServer(data_dir, args=["--store", "memory://"], env=env) as running:
        SERVER_LOGS.append(running.log_path)
        yield running


@pytest.fixture
def client(server: KeyproofServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as opened:
        yield opened


def _reason(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["reason"]


# --- Authorization: Basic with bytes that are not ASCII ----------------------------------


@pytest.mark.parametrize("credentials", [b"\xe9\xe9", b"YWJj\xff", b"\xff" * 40, b"ZT\xe9pw=="])
def test_basic_credentials_with_non_ascii_bytes_are_invalid_client(
    client: httpx.Client, server: KeyproofServer, credentials: bytes
):
    response = client.post(
        "/v1/introspect",
        data={"token": "x"},
        headers={"Authorization": b"Basic " + credentials},
    )
    assert _reason(response) == (401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "Traceback" not in server.log()


def test_control_basic_credentials_that_match_are_accepted(client: httpx.Client):
    response = client.post("/v1/introspect", data={"token": "x"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200
    assert response.json() == {"active": False}


# --- JSON bodies are UTF-8 (RFC 8259 §8.1) ------------------------------------------------


def test_two_sets_of_basic_credentials_are_invalid_client(client: httpx.Client):
    """Even when the first of them is right: which one counts is not for the server to
    guess (``/v1/actions/verify`` refuses two Authorization headers as well)."""
    good = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    bad = "Basic " + base64.b64encode(f"{CLIENT_ID}:wrong".encode()).decode()
    for pair in ([good, bad], [good, good]):
        response = client.post(
            "/v1/introspect",
            data={"token": "x"},
            headers=[("Authorization", value) for value in pair],
        )
        assert _reason(response) == (401, "invalid_client")
    single = client.post("/v1/introspect", data={"token": "x"}, headers={"Authorization": good})
    assert single.status_code == 200


def _json_requests(account: str) -> list[tuple[str, dict[str, object]]]:
    return [
        ("/v1/challenge", {"account": account}),
        ("/v1/token", {"message": "x", "signature": "y"}),
        ("/v1/revoke", {"token": "x"}),
        ("/v1/actions/verify", {"expect": {}, "action": {}, "signature": "x"}),
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_utf16_and_utf32_json_bodies_are_refused(client: httpx.Client, encoding: str):
    account = EthWallet.create().caip10()
    for path, body in _json_requests(account):
        response = client.post(
            path,
            content=json.dumps(body).encode(encoding),
            headers={"Content-Type": f"application/json; charset={encoding}"},
        )
        assert _reason(response) == (400, "invalid_json"), (path, response.text)


def test_utf8_with_a_byte_order_mark_is_refused(client: httpx.Client):
    body = json.dumps({"account": EthWallet.create().caip10()}).encode("utf-8-sig")
    response = client.post(
        "/v1/challenge", content=body, headers={"Content-Type": "application/json"}
    )
    assert _reason(response) == (400, "invalid_json")


def test_control_the_same_body_in_utf8_is_served(client: httpx.Client):
    body = json.dumps({"account": EthWallet.create().caip10()}).encode("utf-8")
    response = client.post(
        "/v1/challenge", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201


def _deep(depth: int) -> str:
    # U+2200 is 22 00 in UTF-16-LE: a byte scanner takes it for a quote and stops counting.
    return '{"account": "\u2200", "x": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("encoding", ["utf-8", *ENCODINGS])
def test_nesting_depth_limit_holds_in_every_encoding(encoding: str):
    with pytest.raises(InvalidRequest) as refused:
        _parse_object(_deep(31).encode(encoding))
    assert refused.value.code == "invalid_json"
    assert _parse_object(_deep(MAX_JSON_DEPTH - 1).encode("utf-8"))["account"] == "\u2200"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_json_are_refused(constant: str):
    with pytest.raises(InvalidRequest):
        _parse_object(f'{{"account": {constant}}}'.encode())


# --- Requests the HTTP parser refuses, and protocol upgrades ------------------------------


def _exchange(server: KeyproofServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        return read_response(sock)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \x0b\r\n\r\n",
    ],
    ids=["negative_length", "bad_chunk", "length_and_chunked", "http2_preface", "control_char"],
)
def test_what_the_parser_refuses_is_a_json_400(server: KeyproofServer, request_bytes: bytes):
    status, headers, body = _exchange(server, request_bytes)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close"
    assert json.loads(body)["reason"] == "invalid_http"


def test_a_websocket_upgrade_is_served_as_plain_http(server: KeyproofServer):
    status, headers, body = _exchange(
        server,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    assert status == 200, body
    assert "x-request-id" in headers  # answered by the app, through its edge


# --- A client that leaves before its body arrives -----------------------------------------

POST_ENDPOINTS = ["/v1/challenge", "/v1/token", "/v1/revoke", "/v1/actions/verify"]
BASIC = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def _leave_mid_body(server: KeyproofServer, path: str, extra: str = "") -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            '{"mess'.encode()
        )


def _access_lines(server: KeyproofServer, path: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    return [x for x in lines if x.get("message") == "request" and x.get("path") == path]


@pytest.mark.parametrize("path", [*POST_ENDPOINTS, "/v1/introspect"])
def test_a_client_that_leaves_mid_body_is_logged_as_499_not_as_a_server_error(
    server: KeyproofServer, path: str
):
    before = len(_access_lines(server, path))
    extra = f"Authorization: Basic {BASIC}\r\n" if path == "/v1/introspect" else ""
    _leave_mid_body(server, path, extra)
    deadline = time.monotonic() + 10
    while len(_access_lines(server, path)) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = _access_lines(server, path)[before:]
    assert [line["status"] for line in logged] == [499]


def test_every_hostile_request_was_answered_below_500_without_a_traceback(
    server: KeyproofServer, client: httpx.Client
):
    """Runs last in this module: the log holds every request of the tests above."""
    client.post("/v1/introspect", headers={"Authorization": b"Basic \xe9\xe9"})
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    statuses = [line["status"] for line in lines if line["message"] == "request"]
    assert len(statuses) > 30
    assert max(statuses) < 500
    assert not [line for line in lines if line["level"] in {"error", "critical"}]
    assert "Traceback" not in server.log()
