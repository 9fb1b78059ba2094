"""The HTTP adapter: status codes, error shape, limits, headers. Never a 500 on input."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import EthWallet

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def client(settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def challenge(client: TestClient, wallet: EthWallet, scope: str = "") -> dict[str, str]:
    response = client.post("/v1/challenge", json={"account": wallet.caip10(), "scope": scope})
    assert response.status_code == 201, response.text
    return dict(response.json())


def redeem(client: TestClient, message: str, signature: str) -> tuple[int, dict[str, str]]:
    response = client.post("/v1/token", json={"message": message, "signature": signature})
    return response.status_code, dict(response.json())


def test_flow_over_http(client: TestClient):
    wallet = EthWallet.create()
    issued = challenge(client, wallet, "escrow:read escrow:release")
    assert set(issued) == {"nonce", "message", "account", "scope", "issued_at", "expires_at"}
    status, body = redeem(client, issued["message"], wallet.sign(issued["message"]))
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "escrow:read escrow:release"
    assert body["expires_in"] == 600


def test_challenge_and_token_are_not_cached(client: TestClient):
    wallet = EthWallet.create()
    response = client.post("/v1/challenge", json={"account": wallet.caip10()})
    assert response.headers["cache-control"] == "no-store"
    message = response.json()["message"]
    token = client.post("/v1/token", json={"message": message, "signature": wallet.sign(message)})
    assert token.headers["cache-control"] == "no-store"


def test_error_shape_and_status_for_replay(client: TestClient):
    wallet = EthWallet.create()
    issued = challenge(client, wallet)
    signature = wallet.sign(issued["message"])
    assert redeem(client, issued["message"], signature)[0] == 200
    status, body = redeem(client, issued["message"], signature)
    assert status == 401
    assert body["error"] == "invalid_grant"
    assert body["reason"] == "nonce_used"
    assert body["error_description"]


def _split(signature: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(signature[2:])
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def _join(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda r, s, v: _join(r, SECP256K1_N - s, 27 + ((v - 27) ^ 1)), 401, "signature_invalid"),
        (lambda r, s, v: _join(r, s, 35), 400, "malformed_signature"),
        # Not an EOA signature's length: a contract wallet's, and no RPC is configured.
        (lambda r, s, v: _join(r, s, v)[:-2], 401, "signature_invalid"),
        (lambda r, s, v: _join(r, s, v) + "00", 401, "signature_invalid"),
        (lambda r, s, v: "0x" + "zz" * 65, 400, "malformed_signature"),
        (lambda r, s, v: _join(r, s, v)[2:], 400, "malformed_signature"),
    ],
    ids=["high_s_twin", "v_35", "64_bytes", "66_bytes", "non_hex", "no_0x_prefix"],
)
def test_signature_edge_cases_refused_and_nonce_kept(client: TestClient, mutate, status, reason):
    wallet = EthWallet.create()
    issued = challenge(client, wallet)
    good = wallet.sign(issued["message"])
    got_status, body = redeem(client, issued["message"], mutate(*_split(good)))
    assert (got_status, body["reason"]) == (status, reason)
    assert redeem(client, issued["message"], good)[0] == 200


def test_v_0_and_1_both_accepted_across_signatures(client: TestClient):
    seen: set[int] = set()
    for _ in range(40):
        wallet = EthWallet.create()
        issued = challenge(client, wallet)
        r, s, v = _split(wallet.sign(issued["message"]))
        assert redeem(client, issued["message"], _join(r, s, v - 27))[0] == 200
        seen.add(v - 27)
        if seen == {0, 1}:
            return
    pytest.fail("40 signatures never produced both recovery ids")


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        (
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            {"content": b"x" * 20000, "headers": {"content-type": "application/json"}},
            413,
            "payload_too_large",
        ),
        (
            {"content": b"[" * 5000 + b"]" * 5000, "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b'"a string"', "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {
                "content": b'{"account": "a", "account": "b"}',
                "headers": {"content-type": "application/json"},
            },
            400,
            "invalid_json",
        ),
        ({"json": {}}, 400, "missing_field"),
        ({"json": {"account": 5}}, 400, "invalid_field"),
        (
            {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b'{"account": "\\ud800"}', "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
    ],
    ids=[
        "wrong_content_type",
        "too_large",
        "deeply_nested",
        "broken",
        "not_an_object",
        "duplicate_keys",
        "missing_account",
        "account_not_string",
        "not_utf8",
        "lone_surrogate",
    ],
)
def test_bad_requests(client: TestClient, kwargs, status, reason):
    response = client.post("/v1/challenge", **kwargs)
    assert response.status_code == status
    assert response.json()["reason"] == reason


def test_unknown_path_and_method_are_json_errors(client: TestClient):
    assert client.get("/nope").json()["reason"] == "not_found"
    response = client.get("/v1/token")
    assert (response.status_code, response.json()["reason"]) == (405, "method_not_allowed")


def test_token_request_with_garbage_message(client: TestClient):
    status, body = redeem(client, "hello\nworld", "0x00")
    assert (status, body["reason"]) == (400, "malformed_message")


def test_metadata_and_jwks(client: TestClient, settings: Settings):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == settings.issuer
    assert metadata["challenge_endpoint"] == f"{settings.issuer}/v1/challenge"
    assert metadata["jwks_uri"] == f"{settings.issuer}/.well-known/jwks.json"
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert [k["kty"] for k in keys] == ["OKP"]
    assert all("d" not in k for k in keys)
    assert client.get("/healthz").json() == {"status": "ok"}


def test_domain_comes_from_settings_not_host_header(client: TestClient, settings: Settings):
    wallet = EthWallet.create()
    response = client.post(
        "/v1/challenge", json={"account": wallet.caip10()}, headers={"host": "evil.example"}
    )
    assert response.json()["message"].startswith(f"{settings.domain} wants you")


def test_lone_surrogate_in_token_request_is_400_not_500(client: TestClient):
    body = b'{"message": "\\ud800 wants you", "signature": "0x00"}'
    response = client.post("/v1/token", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["reason"]) == (400, "invalid_json")


def test_readyz_fails_while_the_key_file_cannot_be_reloaded(settings: Settings, clock: FrozenClock):
    from keyproof.server.keys import KEY_FILE_NAME

    app = create_app(settings, store=MemoryStore(clock=clock), clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        assert test_client.get("/readyz").status_code == 200
        key_file = settings.data_dir / KEY_FILE_NAME
        good = key_file.read_bytes()
        key_file.write_text("{ not json")
        clock.advance(2)
        response = test_client.get("/readyz")
        assert (response.status_code, response.json()["reason"]) == (503, "keys_unavailable")
        assert response.headers["retry-after"]
        jwks = test_client.get("/.well-known/jwks.json").json()
        assert len(jwks["keys"]) == 1, "the last good key set keeps serving"
        key_file.write_bytes(good + b"\n")
        clock.advance(2)
        assert test_client.get("/readyz").status_code == 200


def test_verifier_leeway_is_capped(keyset: KeySet):
    from keyproof.tokens import MAX_VERIFY_LEEWAY, verify_access_token

    with pytest.raises(ValueError, match="leeway"):
        verify_access_token(
            "x",
            keys=keyset.public_keys(),
            issuer="i",
            audience="a",
            now=0,
            leeway=MAX_VERIFY_LEEWAY + 1,
        )


@pytest.mark.parametrize("url", ["memory://", "sqlite:///{data}/store.db"])
def test_store_opened_from_its_url_runs_on_the_app_clock(
    settings: Settings, keyset: KeySet, clock: FrozenClock, url: str
):
    configured = dataclasses.replace(settings, store=url.format(data=settings.data_dir))
    app = create_app(configured, keys=keyset, clock=clock)
    wallet = EthWallet.create()
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        issued = challenge(test_client, wallet)
        clock.advance(configured.challenge_ttl)
        # On the wall clock the challenge would still be stored (message_expired);
        # on the app's clock the store has let it go.
        status, body = redeem(test_client, issued["message"], wallet.sign(issued["message"]))
    assert (status, body["reason"]) == (401, "nonce_unknown")
