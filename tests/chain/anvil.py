"""A real local Ethereum node: anvil from the npm package, on 127.0.0.1 and a free port."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from keyproof.testing import free_port

CHAIN_ID = 31337
STARTUP_SECONDS = 30.0
TX_GAS = hex(15_000_000)


class RpcError(Exception):
    """The node answered a JSON-RPC error."""


class Anvil:
    """One anvil process; its first unlocked account sends every test transaction."""

    def __init__(self, binary: Path, log_path: Path, chain_id: int = CHAIN_ID) -> None:
        self.binary = binary
        self.log_path = log_path
        self.chain_id = chain_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.caip2 = f"eip155:{chain_id}"
        self.process: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._sender = ""

    def start(self) -> Anvil:
        command = [
            str(self.binary),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--chain-id", str(self.chain_id), "--accounts", "2"),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_answering()
        self._sender = self.rpc("eth_accounts")[0]
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"anvil exited early:\n{self.log_path.read_text()}")
            try:
                if int(self.rpc("eth_chainId"), 16) == self.chain_id:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"anvil did not answer:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    # -- JSON-RPC ----------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        answer = httpx.post(self.url, json=payload, timeout=30).json()
        if "error" in answer:
            raise RpcError(f"{method}: {answer['error']}")
        return answer["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def code(self, address: str) -> bytes:
        return bytes.fromhex(self.rpc("eth_getCode", address, "latest")[2:])

    def call(self, to: str, data: bytes) -> bytes:
        return bytes.fromhex(self.rpc("eth_call", {"to": to, "data": "0x" + data.hex()})[2:])

    def transact(self, to: str | None, data: bytes) -> dict[str, Any]:
        """Send and mine a transaction from an unlocked account; its receipt."""
        tx: dict[str, Any] = {"from": self._sender, "data": "0x" + data.hex(), "gas": TX_GAS}
        if to is not None:
            tx["to"] = to
        receipt = self.rpc("eth_getTransactionReceipt", self.rpc("eth_sendTransaction", tx))
        if receipt is None or receipt["status"] != "0x1":
            raise RpcError(f"transaction failed: {receipt}")
        return dict(receipt)

    def deploy(self, creation_code: bytes) -> str:
        address = self.transact(None, creation_code)["contractAddress"]
        return str(address)
