"""Client input a real server must refuse with a 4xx: never a 500, never a traceback.

One ``keyproof serve`` on 127.0.0.1 for the module; its log is checked at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from keyproof._httpio import MAX_JSON_DEPTH, _parse_object
from keyproof.errors import InvalidRequest
from keyproof.testing import KeyproofServer

from conftest import SERVER_LOGS
from test_guard import CLIENT_ID, CLIENT_SECRET
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
