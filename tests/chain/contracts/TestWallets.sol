// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

// Wallets for keyproof's chain tests, compiled at test time by compile.mjs.

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {SimpleAccount} from "@account-abstraction/contracts/accounts/SimpleAccount.sol";

// The ERC-4337 SimpleAccount of the account-abstraction package, plus the EIP-1271
// isValidSignature it lacks: valid when the owner signed the hash itself.
contract SignableSimpleAccount is SimpleAccount {
    constructor(IEntryPoint entryPoint_) SimpleAccount(entryPoint_) {}

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError error, ) = ECDSA.tryRecover(hash, signature);
        bool valid = error == ECDSA.RecoverError.NoError && signer == owner;
        return valid ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}

// SimpleAccountFactory of the account-abstraction package (the v0.7 behaviour: anyone
// may deploy an account, as ERC-6492 needs), deploying SignableSimpleAccount.
contract SignableSimpleAccountFactory {
    SignableSimpleAccount public immutable accountImplementation;

    constructor(IEntryPoint entryPoint_) {
        accountImplementation = new SignableSimpleAccount(entryPoint_);
    }

    function createAccount(address owner, uint256 salt) public returns (SignableSimpleAccount ret) {
        address addr = getAddress(owner, salt);
        if (addr.code.length > 0) {
            return SignableSimpleAccount(payable(addr));
        }
        ret = SignableSimpleAccount(payable(new ERC1967Proxy{salt: bytes32(salt)}(
            address(accountImplementation), abi.encodeCall(SimpleAccount.initialize, (owner))
        )));
    }

    function getAddress(address owner, uint256 salt) public view returns (address) {
        bytes memory proxy = abi.encodePacked(
            type(ERC1967Proxy).creationCode,
            abi.encode(address(accountImplementation), abi.encodeCall(SimpleAccount.initialize, (owner)))
        );
        return Create2.computeAddress(bytes32(salt), keccak256(proxy));
    }
}

/// Says "valid" to every hash and signature: it can still only sign in as itself.
contract AcceptsEverything {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        return 0x1626ba7e;
    }
}

/// Burns all the gas it is given, as a wallet or as an ERC-6492 factory.
contract BurnsAllGas {
    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        return _spin();
    }

    fallback() external {
        _spin();
    }

    function _spin() private view returns (bytes4) {
        uint256 spin = 0;
        while (gasleft() > 0) {
            spin++;
        }
        return bytes4(uint32(spin));
    }
}

/// An ERC-6492 factory that deploys a BurnsAllGas wallet and then burns almost all the
/// gas left: the wallet call that follows starts starved.
contract BurningWalletFactory {
    function deploy(bytes32 salt) external returns (address wallet) {
        wallet = address(new BurnsAllGas{salt: salt}());
        while (gasleft() > 5000) {}
    }

    function walletAddress(bytes32 salt) external view returns (address) {
        bytes32 code = keccak256(type(BurnsAllGas).creationCode);
        return address(uint160(uint256(keccak256(abi.encodePacked(hex"ff", address(this), salt, code)))));
    }
}

/// Reverts for everything.
contract RevertsAlways {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        revert("no");
    }
}

/// Answers the magic value unpadded: 4 bytes of return data instead of one ABI word.
contract ReturnsShortMagic {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        assembly {
            mstore(0, shl(224, 0x1626ba7e))
            return(0, 4)
        }
    }
}
