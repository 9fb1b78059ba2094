"""The committed deployless check is what its Solidity source compiles to, and behaves so."""

from __future__ import annotations

from pathlib import Path

from eth_abi import decode

import keyproof.chain
from keyproof.chain._check import CREATION_CODE, call_data

from .anvil import Anvil
from .conftest import compile_solidity

SOURCE = Path(keyproof.chain.__file__).with_name("SignatureCheck.sol")
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "metadata": {"appendCBOR": False},
}
PUSH0 = 0x5F


def test_creation_code_is_the_compiled_source(node: str):
    output = compile_solidity(node, SETTINGS, SOURCE)
    assert output["solc"].startswith("0.8.28+")
    compiled = output["contracts"]["KeyproofSignatureCheck"]["bytecode"]
    assert bytes.fromhex(compiled[2:]) == CREATION_CODE


def test_creation_code_has_no_push0():
    # PUSH0 (Shanghai) would fail on chains that lack it; paris output never has it.
    position = 0
    while position < len(CREATION_CODE):
        opcode = CREATION_CODE[position]
        assert opcode != PUSH0, f"PUSH0 at {position}"
        position += 1 + (opcode - 0x5F if 0x60 <= opcode <= 0x7F else 0)


def test_address_without_code_is_answered_zero_not_an_error(anvil: Anvil):
    # No wallet, no factory: the call still answers, with a 0.
    data = call_data(bytes(range(20)), bytes(32), b"\x01" * 65, call_gas=1_000_000)
    answer = anvil.rpc("eth_call", {"data": "0x" + data.hex(), "gas": hex(3_000_000)}, "latest")
    assert decode(["uint256"], bytes.fromhex(answer[2:])) == (0,)
