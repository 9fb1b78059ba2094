"""Browser apps: CORS only for listed origins, and relying parties' domains in challenges."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keyproof.errors import ConfigurationError
from keyproof.server.app import BROWSER_ROUTES, ROUTES, create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KeySet
from keyproof.server.origins import RelyingParty
from keyproof.stores.memory import MemoryStore

from conftest import FrozenClock
from wallets import AgentEd25519Wallet, AgentSecp256k1Wallet, EthWallet, SolanaWallet

APP = "https://app.example.com"
SHOP = "http://127.0.0.1:5173"
STRANGER = "https://evil.example"
PARTIES = (
    RelyingParty(origin=APP, domain="app.example.com", uri="https://app.example.com/login"),
    RelyingParty(origin=SHOP, domain="127.0.0.1:5173", uri="http://127.0.0.1:5173"),
)


@pytest.fixture
def browser_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        chains=("eip155:1", "solana:mainnet", "did:key"),
        cors_origins=(APP, SHOP),
        relying_parties=PARTIES,
        challenge_limit_per_ip=3,
    )


@pytest.fixture
def client(browser_settings: Settings, keyset: KeySet, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(browser_settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


def cors_headers(headers: object) -> dict[str, str]:
    items = dict(headers.items())  # type: ignore[attr-defined]
    return {k: v for k, v in items.items() if k.startswith("access-control-")}


def preflight(client: TestClient, path: str, origin: str, method: str = "POST"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )


# --- CORS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(BROWSER_ROUTES))
def test_preflight_from_a_listed_origin_is_answered(client: TestClient, path: str):
    method = next(m for p, _, m in ROUTES if p == path)
    response = preflight(client, path, SHOP, method)
    assert response.status_code == 204
    assert cors_headers(response.headers) == {
        "access-control-allow-origin": SHOP,
        "access-control-allow-methods": method,
        "access-control-allow-headers": "Content-Type, DPoP",
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "Origin"


def test_preflight_from_an_unlisted_origin_gets_no_cors_headers(client: TestClient):
    response = preflight(client, "/v1/challenge", STRANGER)
    assert response.status_code == 405
    assert cors_headers(response.headers) == {}


@pytest.mark.parametrize("path", ["/v1/introspect", "/v1/actions/verify", "/metrics", "/readyz"])
def test_server_to_server_endpoints_answer_no_browser(client: TestClient, path: str):
    method = next(m for p, _, m in ROUTES if p == path)
    assert cors_headers(preflight(client, path, APP, method).headers) == {}
    response = client.request(method, path, headers={"Origin": APP})
    assert cors_headers(response.headers) == {}


def test_answers_to_a_listed_origin_expose_the_error_headers(client: TestClient):
    response = client.post("/v1/challenge", json={"account": "nonsense"}, headers={"Origin": APP})
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_account"  # readable by the page
    assert response.headers["access-control-allow-origin"] == APP
    exposed = response.headers["access-control-expose-headers"].split(", ")
    # DPoP-Nonce: a browser's DPoP client must read the server's nonce (RFC 9449 §8).
    assert {"WWW-Authenticate", "Retry-After", "DPoP-Nonce"} <= set(exposed)
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_a_rate_limited_page_can_read_retry_after(client: TestClient):
    account = EthWallet.create().caip10()
    statuses = [
        client.post("/v1/challenge", json={"account": account}, headers={"Origin": APP})
        for _ in range(4)
    ]
    refused = statuses[-1]
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == APP
    assert "Retry-After" in refused.headers["access-control-expose-headers"]
    assert refused.headers["retry-after"]


@pytest.mark.parametrize(
    "headers",
    [{"Origin": STRANGER}, {"Origin": "null"}, {"Origin": APP + "/"}, {}],
    ids=["unlisted", "opaque", "not_serialized", "none"],
)
def test_other_origins_get_no_cors_headers(client: TestClient, headers: dict[str, str]):
    response = client.get("/.well-known/jwks.json", headers=headers)
    assert response.status_code == 200
    assert cors_headers(response.headers) == {}
    assert response.headers["vary"] == "Origin"  # a shared cache keeps answers apart


def test_two_origin_headers_get_no_cors_headers(client: TestClient):
    response = client.get("/.well-known/jwks.json", headers=[("Origin", APP), ("Origin", SHOP)])
    assert cors_headers(response.headers) == {}


def test_without_cors_origins_nothing_is_labelled(
    settings: Settings, keyset: KeySet, clock: FrozenClock
):
    app = create_app(settings, store=MemoryStore(clock=clock), keys=keyset, clock=clock)
    with TestClient(app) as plain:
        assert preflight(plain, "/v1/challenge", APP).status_code == 405
        response = plain.get("/.well-known/jwks.json", headers={"Origin": APP})
        assert cors_headers(response.headers) == {}
        assert "vary" not in response.headers


# --- relying parties ------------------------------------------------------------------------


def challenge(client: TestClient, account: str, **extra: object) -> dict[str, str]:
    headers = extra.pop("headers", {})
    body = {"account": account, **extra}
    response = client.post("/v1/challenge", json=body, headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    return dict(response.json())


def first_lines(message: str) -> tuple[str, str]:
    lines = message.split("\n")
    return lines[0].split(" ", 1)[0], next(x for x in lines if x.startswith("URI: "))[5:]


WALLETS = {
    "ethereum": lambda: (w := EthWallet.create(), w.caip10(), w.sign),
    "solana": lambda: (w := SolanaWallet.create(), w.caip10(), w.sign),
    "did_key_ed25519": lambda: (w := AgentEd25519Wallet.create(), w.did, w.sign),
    "did_key_secp256k1": lambda: (w := AgentSecp256k1Wallet.create(), w.did, w.sign),
}


@pytest.mark.parametrize("family", sorted(WALLETS))
def test_challenge_from_a_relying_party_carries_its_domain(client: TestClient, family: str):
    _, account, sign = WALLETS[family]()
    issued = challenge(client, account, headers={"Origin": APP})
    assert first_lines(issued["message"]) == ("app.example.com", "https://app.example.com/login")
    redeemed = client.post(
        "/v1/token", json={"message": issued["message"], "signature": sign(issued["message"])}
    )
    assert redeemed.status_code == 200, redeemed.text


def test_an_origin_named_in_the_body_selects_its_party(client: TestClient):
    """A backend that asks on its page's behalf sends no Origin header."""
    issued = challenge(client, EthWallet.create().caip10(), origin=SHOP)
    assert first_lines(issued["message"]) == ("127.0.0.1:5173", "http://127.0.0.1:5173")


@pytest.mark.parametrize(
    "headers", [{}, {"Origin": STRANGER}, {"Origin": "null"}], ids=["none", "other", "opaque"]
)
def test_other_requests_get_the_default_domain(client: TestClient, headers: dict[str, str]):
    issued = challenge(client, EthWallet.create().caip10(), headers=headers)
    assert first_lines(issued["message"]) == ("127.0.0.1:8000", "http://127.0.0.1:8000")


def test_domain_spoofing_through_the_host_header_is_ignored(client: TestClient):
    issued = challenge(client, EthWallet.create().caip10(), headers={"Host": "app.example.com"})
    assert first_lines(issued["message"])[0] == "127.0.0.1:8000"


@pytest.mark.parametrize(
    ("body_origin", "headers"),
    [(STRANGER, {}), (SHOP, {"Origin": APP}), ("https://APP.example.com", {})],
    ids=["unlisted", "differs_from_header", "not_exact"],
)
def test_a_body_origin_that_is_not_a_party_is_refused(
    client: TestClient, body_origin: str, headers: dict[str, str]
):
    body = {"account": EthWallet.create().caip10(), "origin": body_origin}
    response = client.post("/v1/challenge", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_field"


def test_domain_swap_after_binding_is_refused(client: TestClient):
    """A message bound to one party cannot be redeemed with another domain, either way."""
    wallet = EthWallet.create()
    for origin, swap in ((APP, ("app.example.com", "127.0.0.1:8000")), (None, None)):
        headers = {"Origin": origin} if origin else {}
        message = challenge(client, wallet.caip10(), headers=headers)["message"]
        old, new = swap or ("127.0.0.1:8000", "app.example.com")
        forged = message.replace(old, new, 1)
        response = client.post(
            "/v1/token", json={"message": forged, "signature": wallet.sign(forged)}
        )
        assert response.status_code == 401
        assert response.json()["reason"] == "domain_mismatch"


# --- settings -------------------------------------------------------------------------------


def test_settings_read_cors_origins_and_parties_from_toml_and_environment(tmp_path: Path):
    config = tmp_path / "keyproof.toml"
    config.write_text(
        "[keyproof]\n"
        f'cors_origins = ["{APP}"]\n'
        "[[keyproof.relying_parties]]\n"
        f'origin = "{APP}"\ndomain = "app.example.com"\nuri = "https://app.example.com/login"\n'
    )
    from_file = Settings.load({"config": str(config)}, {})
    assert from_file.cors_origins == (APP,)
    assert from_file.relying_parties == PARTIES[:1]
    from_env = Settings.load(env={"KEYPROOF_CORS_ORIGINS": f"{APP}, {SHOP}"})
    assert from_env.cors_origins == (APP, SHOP)


def test_environment_round_trip_keeps_relying_parties(tmp_path: Path):
    original = Settings(data_dir=tmp_path, cors_origins=(APP,), relying_parties=PARTIES)
    assert Settings.load(env=original.as_environment()) == original


def party_json(**fields: object) -> str:
    entry = {"origin": "https://a.b", "domain": "a.b", "uri": "https://a.b", **fields}
    return json.dumps([{k: v for k, v in entry.items() if v is not None}])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cors_origins": "*"}, "'\\*' is not allowed"),
        ({"cors_origins": "https://app.example.com/"}, "'https://app.example.com'"),
        ({"cors_origins": "https://App.example.com"}, "'https://app.example.com'"),
        ({"cors_origins": "https://app.example.com:443"}, "'https://app.example.com'"),
        ({"cors_origins": "ftp://app.example.com"}, "http\\(s\\)://host"),
        ({"cors_origins": "https://u@app.example.com"}, "http\\(s\\)://host"),
        ({"cors_origins": "https://app.example.com:99999"}, "scheme://host"),
        ({"relying_parties": party_json(origin="*")}, "'\\*'"),
        ({"relying_parties": party_json(uri=None)}, "exactly origin"),
        ({"relying_parties": party_json(extra="x")}, "exactly origin"),
        ({"relying_parties": party_json(domain="a/b")}, "domain"),
        ({"relying_parties": party_json(uri="ftp://a.b")}, "http\\(s\\) URL"),
        ({"relying_parties": party_json(uri="not a uri")}, "uri"),
        ({"relying_parties": party_json(uri=7)}, "strings"),
        ({"relying_parties": '{"origin": "https://a.b"}'}, "array"),
        ({"relying_parties": "[1"}, "JSON array"),
    ],
    ids=[
        "wildcard",
        "trailing_slash",
        "upper_case",
        "default_port",
        "scheme",
        "userinfo",
        "port_range",
        "party_wildcard",
        "party_missing_uri",
        "party_extra_key",
        "party_domain",
        "party_uri_scheme",
        "party_uri_grammar",
        "party_types",
        "party_not_array",
        "party_not_json",
    ],
)
def test_invalid_browser_settings_fail_at_startup(values: dict[str, str], message: str):
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(env={f"KEYPROOF_{k.upper()}": v for k, v in values.items()})


def test_a_relying_party_origin_listed_twice_fails_at_startup():
    with pytest.raises(ConfigurationError, match="twice"):
        Settings(relying_parties=(PARTIES[0], PARTIES[0]))
