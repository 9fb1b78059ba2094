"""The deployment example in deploy/ works as shipped.

- ``keyproof.toml`` is a valid configuration;
- ``nginx -t`` accepts the nginx snippet, and a real nginx with it in front of a real
  keyproof gives keyproof the client's address (a client's own ``X-Forwarded-For`` is
  not believed), its own request id, and no ``/metrics``;
- ``systemd-analyze verify`` accepts the unit.

nginx comes from Debian's package (``.ci/run`` installs it and sets
``KEYPROOF_REQUIRE_NGINX=1``); elsewhere these tests skip with that reason.
``systemd-analyze`` is used where it is installed.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyproof.server.config import Settings
from keyproof.testing import KeyproofServer, free_port

from wallets import EthWallet

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SNIPPET = DEPLOY / "nginx-keyproof.conf"
UNIT = DEPLOY / "keyproof.service"
CONFIG = DEPLOY / "keyproof.toml"
INSTALLED = "/opt/keyproof/bin/keyproof"
CLIENT_ADDRESS = "127.0.0.2"  # the loopback range: a client other than nginx itself


def tool(name: str, *, required_by: str | None = None) -> str:
    """The tool's path; otherwise skip (or fail when ``required_by`` is set to 1)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is not None:
        return found
    reason = f"{name} is not installed"
    if required_by is not None and os.environ.get(required_by) == "1":
        pytest.fail(f"{reason}, and {required_by}=1", pytrace=False)
    pytest.skip(reason)


def test_example_configuration_is_valid_and_trusts_only_nginx():
    settings = Settings.load({"config": str(CONFIG)}, {})
    nginx_peer = ip_address("127.0.0.1")
    trusted = [ip_network(net) for net in settings.trusted_proxies]
    assert any(nginx_peer in net for net in trusted)
    assert all(net.num_addresses == 1 for net in trusted), "only the proxy, no networks"
    upstream = re.search(r"^\s*server (\S+):(\d+);", SNIPPET.read_text(), re.MULTILINE)
    assert upstream is not None
    assert (upstream[1], int(upstream[2])) == (settings.host, settings.port)
    limit = re.search(r"client_max_body_size (\d+)k;", SNIPPET.read_text())
    assert limit is not None and int(limit[1]) * 1024 <= settings.max_body_bytes
    assert settings.metrics_port and settings.metrics_host == "127.0.0.1"
    assert f"KEYPROOF_CONFIG=/etc/keyproof/{CONFIG.name}" in UNIT.read_text()


# --- nginx ---------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert, private = directory / "fullchain.pem", directory / "privkey.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


def nginx_config(directory: Path, *, listen: int, upstream: int) -> Path:
    """The snippet inside a minimal nginx.conf: certificates, ports and paths of this test."""
    directory.mkdir(exist_ok=True)
    cert, private = self_signed(directory)
    snippet = SNIPPET.read_text()
    snippet = "\n".join(line for line in snippet.splitlines() if "listen [::]" not in line)
    snippet = snippet.replace("listen 443 ", f"listen 127.0.0.1:{listen} ")
    snippet = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
    snippet = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", snippet)
    snippet = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {private};", snippet)
    (directory / "keyproof.conf").write_text(snippet)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n"
        f"    include {directory / 'keyproof.conf'};\n}}\n"
    )
    return conf


def nginx_command(nginx: str, conf: Path, *args: str) -> list[str]:
    return [nginx, "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "e.log"), *args]


def test_nginx_accepts_the_snippet(tmp_path: Path):
    nginx = tool("nginx", required_by="KEYPROOF_REQUIRE_NGINX")
    conf = nginx_config(tmp_path, listen=free_port(), upstream=free_port())
    result = subprocess.run(
        nginx_command(nginx, conf, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture
def deployed(tmp_path: Path, server_log: list[Path]) -> Iterator[tuple[str, KeyproofServer]]:
    """keyproof with the example configuration, behind nginx with the example snippet."""
    nginx = tool("nginx", required_by="KEYPROOF_REQUIRE_NGINX")
    data = tmp_path / "keyproof"
    config = tmp_path / "keyproof.toml"
    config.write_text(
        CONFIG.read_text()
        .replace("/var/log/keyproof/", f"{data}/")
        .replace("metrics_port = 9464", f"metrics_port = {free_port()}")
    )
    with KeyproofServer(data, args=["--config", str(config)]) as server:
        server_log.extend([server.log_path, data / "audit.jsonl"])
        listen = free_port()
        conf = nginx_config(tmp_path / "nginx", listen=listen, upstream=server.port)
        with (tmp_path / "nginx.log").open("wb") as out:
            proxy = subprocess.Popen(nginx_command(nginx, conf), stdout=out, stderr=out)
        try:
            wait_for_port(listen, proxy)
            yield f"https://127.0.0.1:{listen}", server
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, "nginx exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen")


def test_behind_the_nginx_snippet_keyproof_sees_the_client_not_its_claim(deployed):
    base, server = deployed
    # Loopback only; the certificate is the test's own, so it is not verified.
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=False)
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "chosen-by-the-client"}
    wallet = EthWallet.create()
    with httpx.Client(base_url=base, transport=transport, headers=spoofed, timeout=10) as client:
        issued = client.post("/v1/challenge", json={"account": wallet.caip10()})
        assert issued.status_code == 201, issued.text
        message = issued.json()["message"]
        body = {"message": message, "signature": wallet.sign(message)}
        token = client.post("/v1/token", json=body)
        metrics = client.get("/metrics")
    assert token.status_code == 200, token.text
    assert metrics.status_code == 404
    audit = (server.data_dir / "audit.jsonl").read_text()
    (entry,) = [json.loads(line) for line in audit.splitlines()]
    assert entry["client_ip"] == CLIENT_ADDRESS
    assert re.fullmatch(r"[0-9a-f]{32}", entry["request_id"]), "nginx's $request_id"
    assert token.headers["x-request-id"] == entry["request_id"]


# --- systemd -------------------------------------------------------------------------------


def test_systemd_accepts_the_unit(tmp_path: Path):
    analyze = tool("systemd-analyze")
    installed = Path(sys.executable).with_name("keyproof")
    assert installed.exists(), "the keyproof console script of this environment"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(installed)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_runs_the_installed_command_the_comments_name():
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} serve" in text
    assert f"ExecStartPre={INSTALLED} check-config" in text
    assert "RestartPreventExitStatus=2" in text
