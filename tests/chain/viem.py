"""viem's verifyMessage / verifyTypedData as a reference verifier (``viem_verify.mjs``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Viem:
    """One node process running viem over a public client on the given node."""

    def __init__(self, node: str, rpc_url: str) -> None:
        self.process = subprocess.Popen(
            [node, str(HERE / "viem_verify.mjs"), rpc_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE,
            text=True,
        )

    def _ask(self, request: dict[str, Any]) -> bool:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"viem failed: {answer['error']}")
        return bool(answer["valid"])

    def verify_message(self, address: str, message: str, signature: str) -> bool:
        return self._ask({"address": address, "message": message, "signature": signature})

    def verify_typed_data(self, address: str, typed_data: dict[str, Any], signature: str) -> bool:
        types = {k: v for k, v in typed_data["types"].items() if k != "EIP712Domain"}
        request = {"address": address, "signature": signature}
        return self._ask({**request, "typedData": {**typed_data, "types": types}})

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
