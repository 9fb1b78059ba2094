"""The deployless signature check: ``SignatureCheck.sol`` beside this file, compiled.

Run as the data of an ``eth_call`` without ``to`` (the deployless method of ERC-6492,
"Off-chain validation"): the node executes the constructor, which may call an ERC-6492
factory and then asks the wallet ``isValidSignature``, and returns one word, 1 or 0.
Nothing is deployed or mined. Unlike the ERC's reference validator it never reverts
for anything the wallet or factory does and never copies their return data, so a
stranger's contract can make it answer 0 but never make the call itself fail.

:data:`CREATION_CODE` is solc 0.8.28's output for ``SignatureCheck.sol`` with the
optimizer at 200 runs, ``evmVersion`` paris (no PUSH0, so it also runs on chains that
lack Shanghai) and no metadata trailer; ``tests/chain/test_signature_check.py``
compiles the source with the solc pinned in ``tests/chain/package-lock.json`` and
compares.
"""

from __future__ import annotations

from typing import Final

from keyproof.chain._abi import address, bytes32, encode, uint256

__all__ = ["CREATION_CODE", "NO_FACTORY", "call_data"]

CREATION_CODE: Final = bytes.fromhex(
    "608060405234801561001057600080fd5b506040516102c43803806102c483398101604081905261002f9161"
    "01ed565b6001600160a01b0383161580159061004f57506001600160a01b0386163b155b1561006657602082"
    "0160008084518360008887f150505b600080876001600160a01b03163b118015610088575061008887878785"
    "610094565b90508060005260206000f35b600080631626ba7e60e01b85856040516024016100b29291906102"
    "89565b60408051601f19818403018152919052602080820180516001600160e01b03166001600160e01b0319"
    "909416939093178352815191935091600091908987fa600051630b135d3f60e11b1460203d10151616969550"
    "5050505050565b80516001600160a01b038116811461012557600080fd5b919050565b634e487b7160e01b60"
    "0052604160045260246000fd5b60005b8381101561015b578181015183820152602001610143565b50506000"
    "910152565b600082601f83011261017557600080fd5b81516001600160401b0381111561018e5761018e6101"
    "2a565b604051601f8201601f19908116603f011681016001600160401b03811182821017156101bc576101bc"
    "61012a565b6040528181528382016020018510156101d457600080fd5b6101e5826020830160208701610140"
    "565b949350505050565b60008060008060008060c0878903121561020657600080fd5b61020f8761010e565b"
    "6020880151604089015191975095506001600160401b0381111561023257600080fd5b61023e89828a016101"
    "64565b94505061024d6060880161010e565b60808801519093506001600160401b0381111561026957600080"
    "fd5b61027589828a01610164565b92505060a087015190509295509295509295565b82815260406020820152"
    "600082518060408401526102ae816060850160208701610140565b601f01601f191691909101606001939250"
    "505056fe"
)
NO_FACTORY: Final = bytes(20)


def call_data(
    signer: bytes,
    digest: bytes,
    signature: bytes,
    *,
    factory: bytes = NO_FACTORY,
    factory_calldata: bytes = b"",
    call_gas: int,
) -> bytes:
    """The ``eth_call`` data: creation code followed by the constructor's arguments."""
    arguments = encode(
        address(signer),
        bytes32(digest),
        signature,
        address(factory),
        factory_calldata,
        uint256(call_gas),
    )
    return CREATION_CODE + arguments
