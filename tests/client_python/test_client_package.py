"""keyproof-client is its own distribution: a pinned API, the base keyproof, never the issuer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import keyproof_client
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = [
    "KEY_TYPES",
    "AccessToken",
    "Key",
    "KeyType",
    "KeyproofAuth",
    "KeyproofClientError",
    "__version__",
    "generate_key",
    "key_from_env",
    "load_key",
    "parse_key",
    "save_key",
    "sign_in",
]

USE_WITHOUT_SERVER = """
import json, sys
from keyproof_client import KEY_TYPES, KeyproofAuth, generate_key
for key_type in KEY_TYPES:
    key = generate_key(key_type)
    KeyproofAuth("https://auth.example.com", key, scope="agent:run").account
    key.sign("text")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("keyproof.server"))))
"""
INSTALLED = """
import importlib.util, pathlib, keyproof_client
print(importlib.util.find_spec("uvicorn"))
print(pathlib.Path(keyproof_client.__file__).with_name("py.typed").is_file())
"""


def run(python: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_the_package_exports_exactly_these_names():
    assert list(keyproof_client.__all__) == EXPORTS
    for name in EXPORTS:
        assert hasattr(keyproof_client, name), name


def test_the_readme_client_table_names_the_same():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python agents", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(keyproof_client)` \| (.*) \|$", section, re.MULTILINE)
    assert len(rows) == 1
    assert re.findall(r"`(\w+)`", rows[0][1]) == EXPORTS


def test_the_client_loads_nothing_of_the_issuer():
    used = run(sys.executable, "-c", USE_WITHOUT_SERVER)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == "[]"


@pytest.mark.slow
def test_installs_beside_the_base_keyproof_alone(tmp_path: Path):
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    installed = run(
        python, "-m", "pip", "install", "--quiet", str(ROOT), str(ROOT / "clients/python")
    )
    assert installed.returncode == 0, installed.stderr[-2000:]

    found = run(python, "-c", INSTALLED)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["None", "True"]  # no issuer dependency; typed package

    made = run(
        home / "bin" / "keyproof-client", "keygen", "--type", "solana", "--out", str(tmp_path / "k")
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("account  solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:")
