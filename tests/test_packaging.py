"""Two sides of one package: a resource server installs and imports the verifier alone.

The base install (``pip install keyproof``) must hold token verification, the guard,
signed actions and the message parsers, and must load nothing of the issuer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_EXTRA = ("uvicorn", "uvloop", "httptools", "prometheus_client", "redis", "asyncpg")

VERIFIER_IMPORTS = f"""
import importlib.util, json, sys
import keyproof.actions, keyproof.guard, keyproof.messages.siwe, keyproof.tokens
print(json.dumps({{
    "server_modules": sorted(m for m in sys.modules if m.startswith("keyproof.server")),
    "installed": [m for m in {SERVER_EXTRA!r} if importlib.util.find_spec(m) is not None],
}}))
"""


def run(python: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_verifier_imports_load_no_server_module():
    result = run(sys.executable, "-c", VERIFIER_IMPORTS)
    assert result.returncode == 0, result.stderr
    assert '"server_modules": []' in result.stdout


@pytest.mark.slow
def test_base_install_is_the_verifier_side(tmp_path: Path):
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    installed = run(python, "-m", "pip", "install", "--quiet", str(ROOT))
    assert installed.returncode == 0, installed.stderr[-2000:]

    imported = run(python, "-c", VERIFIER_IMPORTS)
    assert imported.returncode == 0, imported.stderr
    assert '"server_modules": []' in imported.stdout
    assert '"installed": []' in imported.stdout  # none of the issuer's dependencies

    served = run(home / "bin" / "keyproof", "serve", "--data-dir", str(tmp_path / "data"))
    assert served.returncode == 2
    lines = served.stderr.strip().splitlines()
    assert len(lines) == 1 and "keyproof[server]" in lines[0], served.stderr
    assert not (tmp_path / "data").exists()
