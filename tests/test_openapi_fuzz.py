"""Schemathesis against a real ``keyproof serve``: every response conforms to specs/openapi.yaml.

Every operation is fuzzed (schema examples, boundary and negative cases, random data)
and then driven statefully along the document's links, challenge -> token ->
introspect / revoke, with a real wallet signing each challenge. Every response must be
documented, below 500 and valid against its schema. The run is bounded: a fixed seed,
derandomized generation and a fixed number of examples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.generation.meta import TestPhase
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from keyproof.testing import KeyproofServer

from conftest import SERVER_LOGS
from test_guard import CLIENT_ID, CLIENT_SECRET
from wallets import EthWallet

SEED = 20261129
MAX_EXAMPLES = 200
CONFIG_TOML = """
[keyproof]
challenge_limit_per_ip = 1000000000
failed_token_limit_per_ip = 1000000000
failed_token_limit_per_account = 1000000000

[policy]
scopes = ["profile:read", "escrow:read", "escrow:release"]
default = ["profile:read", "escrow:read", "escrow:release"]
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    config = data_dir / "keyproof.toml"
    config.write_text(CONFIG_TOML)
    digest = hashlib.sha256(CLIENT_SECRET.encode()).hexdigest()
    env = {"KEYPROOF_INTROSPECTION_CLIENTS": f"{CLIENT_ID}:{digest}"}
    with KeyproofServer(data_dir, args=["--config", str(config)], env=env) as running:
        SERVER_LOGS.append(running.log_path)
        yield running


@pytest.fixture(scope="module")
def wallet() -> EthWallet:
    return EthWallet.create()


def _sign_in(url: str, wallet: EthWallet) -> str:
    issued = httpx.post(
        f"{url}/v1/challenge", json={"account": wallet.caip10(), "scope": "escrow:release"}
    ).json()
    signed = {"message": issued["message"], "signature": wallet.sign(issued["message"])}
    return str(httpx.post(f"{url}/v1/token", json=signed).json()["access_token"])


@pytest.fixture(scope="module")
def api_schema(server: KeyproofServer, wallet: EthWallet) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": server.url,
            "request-timeout": 10,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "auth": {
                "openapi": {
                    "introspectionClient": {"username": CLIENT_ID, "password": CLIENT_SECRET},
                    "accessToken": {"bearer": _sign_in(server.url, wallet)},
                }
            },
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


class _Chain:
    """What the stateful phase learnt: tokens issued and revoked, to check introspection."""

    def __init__(self) -> None:
        self.issued: set[str] = set()
        self.revoked: set[str] = set()

    def observe(self, label: str, body: Any, status: int, reply: Any) -> None:
        token = body.get("token") if isinstance(body, dict) else None
        if label == "POST /v1/token" and status == 200:
            self.issued.add(reply["access_token"])
        elif label == "POST /v1/revoke" and status == 200 and token in self.issued:
            self.revoked.add(token)
        elif label == "POST /v1/introspect" and status == 200 and token in self.issued:
            assert reply["active"] is (token not in self.revoked), "introspection after revoke"


def _stateful(case: Any) -> bool:
    return case.meta is not None and case.meta.phase.name == TestPhase.STATEFUL


@contextlib.contextmanager
def _signing_wallet(wallet: EthWallet, chain: _Chain) -> Iterator[None]:
    """In the stateful phase challenges name the test wallet, which signs what the link
    hands to /v1/token; every other phase sends what Schemathesis generated. Schemathesis
    takes call hooks only globally: they are removed again on exit."""

    def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
        body = case.body
        if not _stateful(case) or not isinstance(body, dict):
            return
        if case.operation.label == "POST /v1/challenge":
            body["account"] = wallet.caip10()
            body.pop("dpop_jkt", None)  # a key-bound sign-in needs a proof nobody makes here
        elif case.operation.label == "POST /v1/token":
            message = body.get("message")
            if isinstance(message, str) and wallet.address in message:
                body["signature"] = wallet.sign(message)
                body["grant_type"] = "urn:keyproof:grant-type:signed-challenge"
                for headers in (case.headers, kwargs.get("headers")):
                    if headers:
                        headers.pop("DPoP", None)

    def after_call(ctx: Any, case: Any, response: Any) -> None:
        if _stateful(case):
            reply = response.json() if response.status_code < 300 else None
            chain.observe(case.operation.label, case.body, response.status_code, reply)

    hooks = [schemathesis.hook(before_call), schemathesis.hook(after_call)]
    try:
        yield
    finally:
        for registered in hooks:
            GLOBAL_HOOK_DISPATCHER.unregister(registered)


def _problems(schema: Any) -> list[str]:
    """Every failed check and engine error of a full run: examples, coverage, fuzzing,
    stateful."""
    problems = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        info = check.failure_info
                        problems.append(
                            f"{event.label}: {info.failure.title}: {info.failure.message}\n"
                            f"{info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            problems.append(f"engine: {event.exception!r}")
    return problems


def test_every_response_is_documented_and_valid(api_schema: Any, wallet: EthWallet) -> None:
    chain = _Chain()
    with _signing_wallet(wallet, chain):
        problems = _problems(api_schema)
    assert not problems, "\n\n".join(sorted(set(problems))[:20])
    assert chain.issued, "no stateful scenario reached a token: the links or the signing broke"
    assert chain.revoked, "no stateful scenario revoked a token it was issued"


def test_fuzzed_server_logged_no_error(server: KeyproofServer) -> None:
    """Runs last: the log holds every request of the runs above."""
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    statuses = [line["status"] for line in lines if line.get("message") == "request"]
    assert len(statuses) > 200
    assert max(statuses) < 500
    assert not [line for line in lines if line["level"] in {"error", "critical"}]
    assert "Traceback" not in server.log()
    assert Path(server.log_path).stat().st_size > 0
