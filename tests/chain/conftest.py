"""A real local chain for the smart-contract wallet tests: anvil, solc and viem from npm.

``npm ci`` installs ``package-lock.json`` into this folder once (again when the lock
file changes). Without node, npm or anvil the tests that need them skip with the
reason, or fail when ``KEYPROOF_REQUIRE_CHAIN=1`` (as in CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from starlette.testclient import TestClient

from keyproof.server.keys import KeySet
from keyproof.testing import FrozenClock

from .anvil import Anvil
from .flows import app_client, chain_settings
from .smart_wallets import AccountFactory, SafeDeployment
from .viem import Viem

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
INSTALLED_LOCK = NODE_MODULES / ".keyproof-lock.sha256"
TEST_CONTRACTS = HERE / "contracts" / "TestWallets.sol"
TEST_COMPILER_SETTINGS = {"optimizer": {"enabled": True, "runs": 200}, "evmVersion": "cancun"}


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("KEYPROOF_REQUIRE_CHAIN") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _npm_ci(npm: str) -> None:
    wanted = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    if INSTALLED_LOCK.exists() and INSTALLED_LOCK.read_text() == wanted:
        return
    result = subprocess.run(
        [npm, "ci"], cwd=HERE, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        unavailable(f"npm ci failed in tests/chain: {result.stderr.strip()[-400:]}")
    INSTALLED_LOCK.write_text(wanted)


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with tests/chain/node_modules installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed for the local-chain tests (anvil, solc, viem)")
    _npm_ci(npm)
    return node


def compile_solidity(node: str, settings: dict[str, Any], *files: Path) -> dict[str, Any]:
    """Compile with the pinned solc (``compile.mjs``): ``{"solc", "contracts"}``."""
    result = subprocess.run(
        [node, str(HERE / "compile.mjs"), json.dumps(settings), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="session")
def compiled(node: str) -> dict[str, Any]:
    """``contracts/TestWallets.sol`` compiled: name -> {abi, bytecode}."""
    return dict(compile_solidity(node, TEST_COMPILER_SETTINGS, TEST_CONTRACTS)["contracts"])


@pytest.fixture(scope="session")
def anvil(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    binaries = sorted(NODE_MODULES.glob("@foundry-rs/anvil-*/bin/anvil"))
    if not binaries:
        unavailable("@foundry-rs/anvil has no binary for this platform")
    chain = Anvil(binaries[0], tmp_path_factory.mktemp("anvil") / "anvil.log").start()
    yield chain
    chain.stop()


@pytest.fixture(scope="session")
def safes(anvil: Anvil) -> SafeDeployment:
    return SafeDeployment.deploy(anvil, NODE_MODULES)


@pytest.fixture(scope="session")
def account_factory(anvil: Anvil, compiled: dict[str, Any]) -> AccountFactory:
    return AccountFactory.deploy(anvil, NODE_MODULES, compiled)


@pytest.fixture
def client(
    tmp_path: Path, anvil: Anvil, keyset: KeySet, clock: FrozenClock
) -> Iterator[TestClient]:
    """keyproof over HTTP (in process) with an RPC for the local chain."""
    settings = chain_settings(tmp_path, {anvil.caip2: anvil.url})
    with app_client(settings, keyset, clock) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def viem(node: str, anvil: Anvil) -> Iterator[Viem]:
    reference = Viem(node, anvil.url)
    yield reference
    reference.stop()
