"""``keyproof serve`` that cannot start says why in one line on stderr and exits non-zero.

Each case runs the real command in a child process: no traceback, no banner (every
check runs before it), no JSON log line, and a description naming the cause and the fix.
Existing state files open to group or others are refused the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from keyproof.server.app import create_app
from keyproof.server.config import Settings
from keyproof.server.keys import KEY_FILE_NAME, KeySet
from keyproof.stores.memory import MemoryStore
from keyproof.testing import KeyproofServer, free_port

from conftest import START, FrozenClock


def clean_environment() -> dict[str, str]:
    """The test run's environment without KEYPROOF_* variables (CI sets some)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYPROOF_")}


def serve(data_dir: Path, *args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "keyproof", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port or free_port()), "--data-dir", str(data_dir), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=clean_environment(), check=False
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == "", "the banner was printed before the failure"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"keyproof: {code}: "), lines[0]
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port another process (this one) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    return path


def _bad_key_file(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / KEY_FILE_NAME).write_text('{"keys": 5}')
    (data / KEY_FILE_NAME).chmod(0o600)
    return data


CASES: dict[str, tuple[Callable[[Path], tuple[Path, list[str]]], str, str]] = {
    "data_dir_is_a_file": (
        lambda tmp: (_file(tmp), []),
        "invalid_setting",
        "exists and is not a directory",
    ),
    "data_dir_cannot_be_created": (
        lambda tmp: (_file(tmp) / "data", []),
        "invalid_setting",
        "cannot be created: Not a directory",
    ),
    "store_url_of_an_unknown_scheme": (
        lambda tmp: (tmp / "data", ["--store", "mongodb://x"]),
        "invalid_setting",
        "store mongodb://x: store URL scheme must be one of",
    ),
    "postgres_store_url_without_a_database": (
        lambda tmp: (tmp / "data", ["--store", "postgres://x"]),
        "invalid_setting",
        "store postgres://x: postgresql store URL needs a host and a database",
    ),
    "redis_port_out_of_range": (
        lambda tmp: (tmp / "data", ["--store", "redis://127.0.0.1:99999/0"]),
        "invalid_setting",
        "redis store URL has an invalid port",
    ),
    "redis_not_reachable": (
        lambda tmp: (tmp / "data", ["--store", f"redis://127.0.0.1:{free_port()}/0"]),
        "store_unavailable",
        "cannot use the store redis://127.0.0.1:",
    ),
    "sqlite_file_cannot_be_created": (
        lambda tmp: (tmp / "data", ["--store", f"sqlite:///{_file(tmp)}/keyproof.db"]),
        "store_unavailable",
        "File exists: ",
    ),
    "key_file_malformed": (
        lambda tmp: (_bad_key_file(tmp), []),
        "invalid_key_file",
        "unreadable",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_startup_failure_is_one_line_without_traceback(tmp_path: Path, case: str):
    setup, code, says = CASES[case]
    data_dir, args = setup(tmp_path)
    result = serve(data_dir, *args)
    line = assert_one_line_failure(result, code)
    assert says in line
    # 2: fix the configuration; 3: the store may come back, a restart may succeed.
    assert result.returncode == (3 if code == "store_unavailable" else 2)


def test_port_in_use_is_one_line_without_traceback(tmp_path: Path, listening: int):
    line = assert_one_line_failure(serve(tmp_path / "data", port=listening), "address_in_use")
    assert f"127.0.0.1:{listening} is already in use" in line


def test_metrics_port_in_use_is_one_line_without_traceback(tmp_path: Path, listening: int):
    result = serve(tmp_path / "data", "--metrics-port", str(listening))
    line = assert_one_line_failure(result, "address_in_use")
    assert "choose another metrics_port" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_unwritable_data_dir_is_one_line_without_traceback(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    line = assert_one_line_failure(serve(data), "invalid_setting")
    assert "is not writable" in line


# --- existing state open to group or others ----------------------------------------------


def _loose_data_dir(data: Path) -> Path:
    data.chmod(0o755)
    return data


def _loose_key_file(data: Path) -> Path:
    (data / KEY_FILE_NAME).chmod(0o644)
    return data / KEY_FILE_NAME


def _loose_database(data: Path) -> Path:
    database = data / "keyproof.db"
    database.write_bytes(b"")
    database.chmod(0o640)
    return database


LOOSE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "data_dir": (_loose_data_dir, "chmod 700"),
    "key_file": (_loose_key_file, "chmod 600"),
    "database": (_loose_database, "chmod 600"),
}


@pytest.mark.parametrize("what", sorted(LOOSE))
def test_state_open_to_group_or_others_is_refused_with_the_fix(tmp_path: Path, what: str):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    KeySet.load_or_create(data / KEY_FILE_NAME)
    loosen, fix = LOOSE[what]
    path = loosen(data)
    line = assert_one_line_failure(serve(data), "insecure_permissions")
    assert line.endswith(f"{fix} {path}"), line
    assert "open to group or others" in line


def test_a_good_start_warns_about_a_misspelt_variable(tmp_path: Path, server_log: list[Path]):
    env = {**clean_environment(), "KEYPROOF_TOKENTTL": "60"}
    with KeyproofServer(tmp_path / "data", env=env) as server:
        server_log.append(server.log_path)
        log = server.log()
    assert (
        "keyproof: warning: unknown environment variable KEYPROOF_TOKENTTL is ignored "
        "(did you mean KEYPROOF_TOKEN_TTL?)" in log
    )
    assert log.index("warning") < log.index("keyproof issuer")


def test_a_key_file_replaced_by_one_open_to_others_is_not_loaded(tmp_path: Path):
    """A running server keeps its last good keys and /readyz names the problem."""
    clock = FrozenClock(START)
    settings = Settings(data_dir=tmp_path, store="memory://")
    app = create_app(settings, store=MemoryStore(clock=clock), clock=clock)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/readyz").status_code == 200
        path = tmp_path / KEY_FILE_NAME
        replacement = tmp_path / "copied-in.json"
        KeySet.load(path, clock).rotated(publish_for=600).save(replacement)
        replacement.chmod(0o644)
        replacement.replace(path)  # as `cp` and `mv` by hand would leave it
        clock.advance(2)
        refused = client.get("/readyz")
        assert (refused.status_code, refused.json()["reason"]) == (503, "keys_unavailable")
        assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 1
        path.chmod(0o600)
        path.touch()
        clock.advance(2)
        assert client.get("/readyz").status_code == 200
        assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 2
