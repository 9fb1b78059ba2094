"""keyproof's few ABI shapes agree with eth-abi, and the ERC-6492 wrapper is bounded."""

from __future__ import annotations

import pytest
from eth_abi import encode as eth_abi_encode
from hypothesis import given
from hypothesis import strategies as st

from keyproof.chain import ERC6492_SUFFIX, ContractWallets
from keyproof.chain._abi import (
    address,
    bytes32,
    decode_address_bytes_bytes,
    encode,
    uint256,
)
from keyproof.errors import KeyproofError, MalformedSignature, SignatureInvalid
from keyproof.messages.siwe import FAMILY

addresses = st.binary(min_size=20, max_size=20)
blobs = st.binary(max_size=300)


@given(
    addresses,
    st.binary(min_size=32, max_size=32),
    blobs,
    addresses,
    blobs,
    st.integers(0, 2**256 - 1),
)
def test_encode_agrees_with_eth_abi(signer, digest, signature, factory, calldata, gas):
    ours = encode(
        address(signer), bytes32(digest), signature, address(factory), calldata, uint256(gas)
    )
    theirs = eth_abi_encode(
        ["address", "bytes32", "bytes", "address", "bytes", "uint256"],
        ["0x" + signer.hex(), digest, signature, "0x" + factory.hex(), calldata, gas],
    )
    assert ours == theirs


@given(addresses, blobs, blobs)
def test_decode_reads_what_eth_abi_writes(factory, calldata, signature):
    data = eth_abi_encode(
        ["address", "bytes", "bytes"], ["0x" + factory.hex(), calldata, signature]
    )
    assert decode_address_bytes_bytes(data) == (factory, calldata, signature)


@given(st.binary(max_size=400))
def test_decode_never_reads_outside_the_data(data):
    try:
        factory, calldata, signature = decode_address_bytes_bytes(data)
    except ValueError:
        return
    assert len(factory) == 20 and len(calldata) + len(signature) <= len(data)


def test_decode_refuses_a_dirty_address_and_offsets_past_the_end():
    good = eth_abi_encode(["address", "bytes", "bytes"], ["0x" + "11" * 20, b"a", b"b"])
    dirty = b"\x01" + good[1:]
    far = good[:32] + (2**255).to_bytes(32, "big") + good[64:]
    for data in (dirty, far, good[:95]):
        with pytest.raises(ValueError):
            decode_address_bytes_bytes(data)


def account():
    return FAMILY.parse(
        "example.com wants you to sign in with your Ethereum account:\n"
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23\n\n\n"
        "URI: https://example.com\nVersion: 1\nChain ID: 8453\nNonce: Ab12Cd34Ef56Gh78\n"
        "Issued At: 2027-01-15T08:00:00Z"
    )[1]


async def refusal(signature: str, offline: KeyproofError | None = None) -> KeyproofError:
    offline = offline or SignatureInvalid("signature_invalid", "signature does not verify")
    with pytest.raises(KeyproofError) as refused:
        await ContractWallets().verify(
            account(), bytes(32), signature, offline=offline, refused=lambda: offline
        )
    return refused.value


@pytest.mark.parametrize(
    "signature",
    ["0x", "0x0", "0xzz", "ab" * 66, "0x" + "ab" * 4097, "0x" + ("ab" * 40) + ERC6492_SUFFIX.hex()],
    ids=["empty", "odd", "not_hex", "no_prefix", "over_4096_bytes", "undecodable_wrapper"],
)
async def test_malformed_contract_signatures(signature: str):
    assert (await refusal(signature)).code == "malformed_signature"


async def test_without_an_rpc_only_the_offline_verdict_or_a_clear_refusal():
    wrapped = eth_abi_encode(["address", "bytes", "bytes"], ["0x" + "22" * 20, b"x", b"y"])
    erc6492 = await refusal("0x" + (wrapped + ERC6492_SUFFIX).hex())
    assert (erc6492.code, "no RPC is configured for eip155:8453" in erc6492.description) == (
        "signature_invalid",
        True,
    )
    long = await refusal("0x" + "ab" * 300)
    assert long.code == "signature_invalid" and "no RPC" in long.description
    bad_v = MalformedSignature("malformed_signature", "unsupported recovery id")
    assert await refusal("0x" + "ab" * 65, bad_v) is bad_v
    other_key = await refusal("0x" + "ab" * 65)
    assert other_key.code == "signature_invalid" and "no RPC" in other_key.description
