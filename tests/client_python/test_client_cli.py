"""``keyproof-client`` in a child process: keygen, whoami, login, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from keyproof_client import KEY_TYPES, load_key

from keyproof.testing import free_port

from .conftest import DPOP_ONLY, Services


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "KEYPROOF_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "keyproof_client", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    """The one stderr line of a failed command, which names ``code``."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"keyproof-client: {code}: "), result.stderr
    return lines[0]


def keygen(path: Path, key_type: str = "ed25519") -> subprocess.CompletedProcess[str]:
    return cli("keygen", "--type", key_type, "--out", str(path))


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_keygen_writes_a_0600_key_and_prints_who_it_is(tmp_path: Path, key_type: str):
    path = tmp_path / f"{key_type}.key"
    made = keygen(path, key_type)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    assert made.stdout.splitlines() == [
        f"account  {key.account()}",
        f"did      {key.did}",
        f"type     {key_type}",
    ]


def test_keygen_refuses_to_overwrite(tmp_path: Path):
    path = tmp_path / "agent.key"
    assert keygen(path).returncode == 0
    before = path.read_bytes()
    refused(keygen(path, "ethereum"), "key_file_exists")
    assert path.read_bytes() == before


def test_whoami_from_a_file_and_from_the_environment(tmp_path: Path):
    path = tmp_path / "wallet.key"
    keygen(path, "ethereum")
    key = load_key(path)
    shown = cli("whoami", "--key", str(path), "--chain", "eip155:8453", "--json")
    assert shown.returncode == 0, shown.stderr
    expected = {"type": "ethereum", "account": key.account("eip155:8453"), "did": key.did}
    assert json.loads(shown.stdout) == expected
    from_env = cli("whoami", "--json", env={"KEYPROOF_KEY": path.read_text()})
    assert json.loads(from_env.stdout)["account"] == key.account()


def test_whoami_refuses_a_key_file_others_may_read(tmp_path: Path):
    path = tmp_path / "agent.key"
    keygen(path)
    path.chmod(0o644)
    line = refused(cli("whoami", "--key", str(path)), "key_file_exposed")
    assert "chmod 600" in line


def test_without_a_key_the_command_says_so(tmp_path: Path):
    refused(cli("whoami"), "key_not_found")
    refused(cli("whoami", "--key", str(tmp_path / "absent.key")), "key_not_found")


@pytest.mark.parametrize("key_type", ["secp256k1", "solana"])
def test_login_prints_a_token_the_resource_server_accepts(
    tmp_path: Path, services: Services, key_type: str
):
    path = tmp_path / "agent.key"
    keygen(path, key_type)
    login = cli("login", services.issuer, "--key", str(path), "--scope", "profile:read")
    assert login.returncode == 0, login.stderr
    token = login.stdout.strip()
    assert login.stdout == token + "\n"
    answer = httpx.get(services.me, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["sub"] == load_key(path).account()


def test_login_json_for_scripts(tmp_path: Path, services: Services):
    path = tmp_path / "agent.key"
    keygen(path, "ethereum")
    login = cli("login", services.issuer, "--key", str(path), "--scope", "profile:read", "--json")
    assert login.returncode == 0, login.stderr
    document = json.loads(login.stdout)
    assert sorted(document) == ["access_token", "expires_at", "expires_in", "scope", "token_type"]
    assert (document["token_type"], document["scope"]) == ("Bearer", "profile:read")
    assert 0 < document["expires_in"] <= 600


def test_login_refusal_is_keyproofs_reason_on_one_line(tmp_path: Path, services: Services):
    path = tmp_path / "agent.key"
    keygen(path)
    result = cli("login", services.issuer, "--key", str(path), "--scope", "admin:all")
    refused(result, "unknown_scope")


def test_login_prints_bearer_tokens_so_a_dpop_only_scope_is_refused(
    tmp_path: Path, services: Services
):
    path = tmp_path / "agent.key"
    keygen(path)
    result = cli("login", services.issuer, "--key", str(path), "--scope", DPOP_ONLY)
    assert DPOP_ONLY in refused(result, "invalid_dpop_proof")


def test_login_to_an_issuer_that_does_not_answer(tmp_path: Path):
    path = tmp_path / "agent.key"
    keygen(path)
    nobody = f"http://127.0.0.1:{free_port()}"
    refused(cli("login", nobody, "--key", str(path)), "issuer_unreachable")


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "keyproof-client"
    shown = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0 and "keygen" in shown.stdout and "login" in shown.stdout
