"""The audit log follows logrotate: a moved or deleted file is replaced on the next line,
and ``SIGHUP`` closes the old file at once, without stopping the server."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import httpx
import pytest

from keyproof.server.audit import AUDIT_FILE_NAME, ROTATION_CHECK_SECONDS, AuditLog
from keyproof.testing import KeyproofServer

from conftest import FrozenClock
from wallets import EthWallet

PROC_FD = Path("/proc/self/fd")
needs_proc = pytest.mark.skipif(not PROC_FD.is_dir(), reason="needs /proc to list open files")


def accounts(path: Path) -> list[object]:
    return [json.loads(line)["account"] for line in path.read_text().splitlines()]


def record(log: AuditLog, account: str) -> None:
    log.record("login", "refused", code="nonce_unknown", account=account, client_ip=None)


def open_files(pid: int | str = "self") -> set[str]:
    directory = Path(f"/proc/{pid}/fd")
    found = set()
    for fd in directory.iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:  # closed while listing
            continue
    return found


def test_lines_after_logrotate_moved_the_file_go_to_a_new_file_within_a_second(
    tmp_path: Path, clock: FrozenClock
):
    path = tmp_path / AUDIT_FILE_NAME
    log = AuditLog(path, clock)
    record(log, "before")
    path.rename(tmp_path / "audit.jsonl.1")
    clock.advance(ROTATION_CHECK_SECONDS / 2)
    record(log, "soon after")
    clock.advance(ROTATION_CHECK_SECONDS / 2)
    record(log, "after")
    log.close()
    # The check runs at most once a second: a line soon after the move still joins it.
    assert accounts(tmp_path / "audit.jsonl.1") == ["before", "soon after"]
    assert accounts(path) == ["after"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_line_after_the_file_was_deleted_goes_to_a_new_file(tmp_path: Path, clock: FrozenClock):
    path = tmp_path / AUDIT_FILE_NAME
    log = AuditLog(path, clock)
    record(log, "before")
    path.unlink()
    clock.advance(ROTATION_CHECK_SECONDS)
    record(log, "after")
    log.close()
    assert accounts(path) == ["after"]


@needs_proc
def test_reopen_lets_go_of_the_rotated_file_at_once(tmp_path: Path, clock: FrozenClock):
    path = tmp_path / AUDIT_FILE_NAME
    log = AuditLog(path, clock)
    record(log, "before")
    rotated = tmp_path / "audit.jsonl.1"
    path.rename(rotated)
    assert str(rotated) in open_files()
    log.reopen()
    assert str(rotated) not in open_files()
    record(log, "after")
    log.close()
    assert accounts(path) == ["after"]


def login(url: str) -> None:
    wallet = EthWallet.create()
    message = httpx.post(f"{url}/v1/challenge", json={"account": wallet.caip10()}).json()["message"]
    body = {"message": message, "signature": wallet.sign(message)}
    assert httpx.post(f"{url}/v1/token", json=body).status_code == 200


@needs_proc
def test_sighup_reopens_the_audit_log_and_the_server_keeps_serving(
    tmp_path: Path, server_log: list[Path]
):
    with KeyproofServer(tmp_path / "data") as server:
        server_log.append(server.log_path)
        assert server.process is not None
        audit = server.data_dir / AUDIT_FILE_NAME
        rotated = server.data_dir / "audit.jsonl.1"
        login(server.url)
        audit.rename(rotated)
        assert str(rotated) in open_files(server.process.pid)

        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while str(rotated) in open_files(server.process.pid):
            assert time.monotonic() < deadline, "SIGHUP did not close the rotated audit log"
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        login(server.url)
        server_log.extend([audit, rotated])
    assert len(accounts(rotated)) == 1
    assert len(accounts(audit)) == 1
