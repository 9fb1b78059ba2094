// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title keyproof's deployless signature check (specs/protocol.md §1.2)
/// @notice Never deployed. keyproof runs this creation code with eth_call and no `to`,
/// so the constructor's effects, the ERC-6492 factory call included, are simulated and
/// never mined. The "deployed code" it returns is one 32-byte word: 1 when `signer`
/// accepts `signature` over `hash` (EIP-1271 magic value 0x1626ba7e), else 0.
/// @dev Every way the wallet or the factory can fail (revert, running out of its gas
/// allowance, short, long or odd return data) is a 0: the wallet's calls get at most
/// `callGas` each and return data is never copied beyond one word, so the check itself
/// always finishes, and an eth_call error can only mean that the node failed.
contract KeyproofSignatureCheck {
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    constructor(
        address signer,
        bytes32 hash,
        bytes memory signature,
        address factory,
        bytes memory factoryCalldata,
        uint256 callGas
    ) {
        // ERC-6492: deploy a counterfactual wallet first; a deployed one is asked as it is.
        if (factory != address(0) && signer.code.length == 0) {
            assembly {
                let data := add(factoryCalldata, 32)
                pop(call(callGas, factory, 0, data, mload(factoryCalldata), 0, 0))
            }
        }
        bool valid = signer.code.length > 0 && _accepts(signer, hash, signature, callGas);
        assembly {
            mstore(0, valid)
            return(0, 32)
        }
    }

    /// EIP-1271 isValidSignature(bytes32,bytes): exactly the magic value, ABI-encoded.
    function _accepts(address signer, bytes32 hash, bytes memory signature, uint256 callGas)
        private
        view
        returns (bool ok)
    {
        bytes memory input = abi.encodeWithSelector(ERC1271_MAGIC, hash, signature);
        assembly {
            let called := staticcall(callGas, signer, add(input, 32), mload(input), 0, 32)
            let oneWord := iszero(lt(returndatasize(), 32))
            ok := and(called, and(oneWord, eq(mload(0), shl(224, 0x1626ba7e))))
        }
    }
}
