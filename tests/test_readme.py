"""Every example in README.md runs: shell and Python against a real server, TOML parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyproof.server.config import Settings
from keyproof.testing import KeyproofServer

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyproofServer]:
    with KeyproofServer(tmp_path_factory.mktemp("readme")) as running:
        from conftest import SERVER_LOGS

        SERVER_LOGS.append(running.log_path)
        yield running


def run(command: list[str], server: KeyproofServer) -> subprocess.CompletedProcess[str]:
    # The installed commands (keyproof-client) are on PATH, as after a pip install.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "KEYPROOF_URL": server.url, "PATH": path}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_readme_has_examples():
    assert len(blocks("python")) >= 3
    assert len(blocks("sh")) >= 2


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_example_runs(index: int, server: KeyproofServer):
    result = run(["bash", "-euo", "pipefail", "-c", blocks("sh")[index]], server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the example printed nothing"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index: int, server: KeyproofServer):
    result = run([sys.executable, "-c", blocks("python")[index]], server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the example printed nothing"


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_toml_example_is_a_valid_configuration(index: int, tmp_path: Path):
    text = blocks("toml")[index]
    tomllib.loads(text)
    config = tmp_path / "keyproof.toml"
    config.write_text(text)
    assert Settings.load({"config": str(config)}, {}).config == config
