"""Real smart-contract wallets on the local chain, and their owners' signatures.

- a Safe (v1.4.1 published artifacts: singleton, proxy factory, compatibility fallback
  handler, the EIP-1271 path every Safe app uses), with any owners and threshold;
- an ERC-4337 SimpleAccount (the account-abstraction package's source, plus
  ``isValidSignature``), deployed through its factory or left counterfactual and
  signed with an ERC-6492 wrapper;
- small adversarial contracts (``contracts/TestWallets.sol``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from keyproof.chain import ERC6492_SUFFIX
from keyproof.crypto.secp256k1 import keccak256

from .anvil import Anvil

ZERO_ADDRESS = "0x" + "00" * 20
SAFE_ARTIFACTS = "@safe-global/safe-contracts/build/artifacts/contracts"
ENTRY_POINT_ARTIFACT = "@account-abstraction/contracts/artifacts/EntryPoint.json"


def selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


def calldata(signature: str, *args: Any) -> bytes:
    """``selector ‖ abi.encode(args)`` for a signature of plain types (no tuples)."""
    types = signature[signature.index("(") + 1 : -1]
    return selector(signature) + encode(types.split(",") if types else [], list(args))


def artifact_code(node_modules: Path, relative: str) -> bytes:
    document = json.loads((node_modules / relative).read_text())
    return bytes.fromhex(document["bytecode"].removeprefix("0x"))


def sign_hash(owner: LocalAccount, digest: bytes) -> bytes:
    """The owner's raw ECDSA signature of a 32-byte hash, r‖s‖v with v in {27, 28}."""
    return bytes(owner.unsafe_sign_hash(digest).signature)


def hexed(data: bytes) -> str:
    return "0x" + data.hex()


# --- Safe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SafeDeployment:
    """The Safe v1.4.1 contracts every Safe proxy on the chain uses."""

    anvil: Anvil
    singleton: str
    factory: str
    fallback_handler: str

    @classmethod
    def deploy(cls, anvil: Anvil, node_modules: Path) -> SafeDeployment:
        def code(path: str) -> bytes:
            return artifact_code(node_modules, f"{SAFE_ARTIFACTS}/{path}")

        return cls(
            anvil,
            singleton=anvil.deploy(code("Safe.sol/Safe.json")),
            factory=anvil.deploy(code("proxies/SafeProxyFactory.sol/SafeProxyFactory.json")),
            fallback_handler=anvil.deploy(
                code("handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json")
            ),
        )

    def create(self, owners: list[LocalAccount], threshold: int, salt: int) -> Safe:
        setup = calldata(
            "setup(address[],uint256,address,bytes,address,address,uint256,address)",
            [o.address for o in owners],
            threshold,
            ZERO_ADDRESS,
            b"",
            self.fallback_handler,
            ZERO_ADDRESS,
            0,
            ZERO_ADDRESS,
        )
        create = calldata(
            "createProxyWithNonce(address,bytes,uint256)", self.singleton, setup, salt
        )
        (address,) = decode(["address"], self.anvil.call(self.factory, create))
        self.anvil.transact(self.factory, create)
        return Safe(self, to_checksum_address(address), owners)


@dataclass(frozen=True)
class Safe:
    """A deployed Safe proxy; ``sign`` collects owner signatures as Safe apps do."""

    deployment: SafeDeployment
    address: str
    owners: list[LocalAccount]

    def message_hash(self, digest: bytes) -> bytes:
        """The SafeMessage hash the owners sign for an EIP-1271 check of ``digest``."""
        data = calldata(
            "getMessageHashForSafe(address,bytes)", self.address, encode(["bytes32"], [digest])
        )
        return self.deployment.anvil.call(self.deployment.fallback_handler, data)

    def sign(self, digest: bytes, owners: list[LocalAccount] | None = None) -> str:
        """Owner signatures of ``digest``'s SafeMessage, sorted by owner address."""
        signers = sorted(owners or self.owners, key=lambda o: int(o.address, 16))
        safe_hash = self.message_hash(digest)
        return hexed(b"".join(sign_hash(owner, safe_hash) for owner in signers))


# --- ERC-4337 SimpleAccount ------------------------------------------------------------


@dataclass(frozen=True)
class AccountFactory:
    """A deployed SignableSimpleAccountFactory."""

    anvil: Anvil
    address: str

    @classmethod
    def deploy(cls, anvil: Anvil, node_modules: Path, compiled: dict[str, Any]) -> AccountFactory:
        entry_point = anvil.deploy(artifact_code(node_modules, ENTRY_POINT_ARTIFACT))
        code = bytes.fromhex(compiled["SignableSimpleAccountFactory"]["bytecode"][2:])
        return cls(anvil, anvil.deploy(code + encode(["address"], [entry_point])))

    def account(self, owner: LocalAccount, salt: int) -> SimpleAccount:
        """The account of ``owner`` and ``salt``: its address, deployed or not."""
        data = calldata("getAddress(address,uint256)", owner.address, salt)
        (address,) = decode(["address"], self.anvil.call(self.address, data))
        return SimpleAccount(self, to_checksum_address(address), owner, salt)


@dataclass(frozen=True)
class SimpleAccount:
    factory: AccountFactory
    address: str
    owner: LocalAccount
    salt: int

    @property
    def create_call(self) -> bytes:
        return calldata("createAccount(address,uint256)", self.owner.address, self.salt)

    def deploy(self) -> SimpleAccount:
        self.factory.anvil.transact(self.factory.address, self.create_call)
        return self

    def sign(self, digest: bytes) -> str:
        """EIP-1271 signature of a deployed account: the owner signs the hash."""
        return hexed(sign_hash(self.owner, digest))

    def sign_counterfactual(self, digest: bytes, factory: str | None = None) -> str:
        """ERC-6492: the owner's signature wrapped with the factory call that deploys it."""
        wrapped = encode(
            ["address", "bytes", "bytes"],
            [factory or self.factory.address, self.create_call, sign_hash(self.owner, digest)],
        )
        return hexed(wrapped + ERC6492_SUFFIX)


def deploy_compiled(anvil: Anvil, compiled: dict[str, Any], name: str) -> str:
    """Deploy one of ``contracts/TestWallets.sol``'s constructor-less contracts."""
    return anvil.deploy(bytes.fromhex(compiled[name]["bytecode"][2:]))
