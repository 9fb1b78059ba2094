"""Smart-contract wallets: EIP-1271 and ERC-6492 signatures, asked of the chain (§1.2).

An Ethereum account may be a contract (a Safe, an ERC-4337 account): its "signature" is
whatever its ``isValidSignature(bytes32, bytes)`` accepts, and an account that is not
deployed yet sends it wrapped per ERC-6492 with the factory call that would deploy it.
Callers ask :meth:`ContractWallets.verify` only after the offline ``ecrecover`` check
refused and after every binding check passed. Then, in this order::

    0x-hex of 1..4096 bytes (malformed_signature) -> an ERC-6492 wrapper decodes
    (malformed_signature) -> the chain has an RPC (else signature_invalid) -> the
    wrapper's factory is allowed (signature_invalid) -> one eth_call of the deployless
    check (keyproof.chain._check), bounded in time, gas and response size -> 1: valid;
    0: refused; no answer or anything else: 503 upstream_unavailable

Only ``eth_call`` is ever sent, never a transaction; the factory call is simulated.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from keyproof.accounts import Account
from keyproof.chain import _check
from keyproof.chain._abi import decode_address_bytes_bytes
from keyproof.chain._rpc import RpcClient, RpcFailure
from keyproof.errors import (
    ConfigurationError,
    KeyproofError,
    MalformedSignature,
    SignatureInvalid,
    Unavailable,
)
from keyproof.jwks import check_url

__all__ = [
    "ERC6492_SUFFIX",
    "MAX_CONTRACT_SIGNATURE_BYTES",
    "MAX_CONTRACT_SIGNATURE_CHARS",
    "MAX_RPC_RESPONSE_BYTES",
    "ContractWalletConfig",
    "ContractWallets",
    "RpcObserver",
]

logger = logging.getLogger("keyproof.chain")

MAX_CONTRACT_SIGNATURE_BYTES: Final = 4096
MAX_CONTRACT_SIGNATURE_CHARS: Final = 2 + 2 * MAX_CONTRACT_SIGNATURE_BYTES
MAX_RPC_RESPONSE_BYTES: Final = 16 * 1024
MAX_RPC_CONNECTIONS: Final = 32
ERC6492_SUFFIX: Final = bytes.fromhex("6492" * 16)
GAS_CAP_RANGE: Final = (1_000_000, 1 << 24)  # EIP-7825 caps a transaction at 2^24 gas
TIMEOUT_RANGE: Final = (0.1, 30.0)
RETRY_AFTER: Final = 5
_EIP155_CHAIN: Final = re.compile(r"eip155:[1-9][0-9]{0,15}", re.ASCII)
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_HEX: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+", re.ASCII)
_VALID: Final = (1).to_bytes(32, "big")
_INVALID: Final = bytes(32)

RpcObserver = Callable[[str, float, str | None], None]
"""Told of every ``eth_call``: ``(chain, seconds, failure reason or None)``."""


@dataclass(frozen=True)
class ContractWalletConfig:
    """Which chains can be asked, and the bounds on every call. Checked when built."""

    rpc_urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    """CAIP-2 ``eip155:<id>`` -> JSON-RPC URL (https, or http to loopback); URLs often
    carry an API key, so they are never shown."""
    timeout: float = 5.0
    """Seconds for one whole ``eth_call`` exchange."""
    gas_cap: int = 3_000_000
    """The ``gas`` of every ``eth_call``."""
    factories: frozenset[str] = frozenset()
    """ERC-6492 factories allowed to deploy a counterfactual wallet; empty: any."""

    def __post_init__(self) -> None:
        for chain, url in self.rpc_urls.items():
            if not isinstance(chain, str) or _EIP155_CHAIN.fullmatch(chain) is None:
                raise _invalid(f"rpc_urls: {str(chain)[:40]!r} is not an eip155:<chain id>")
            if not isinstance(url, str):
                raise _invalid(f"rpc_urls: the URL for {chain} must be a string")
            check_url(url, f"the RPC URL for {chain}")
        if not TIMEOUT_RANGE[0] <= self.timeout <= TIMEOUT_RANGE[1]:
            raise _invalid(f"rpc_timeout must be {TIMEOUT_RANGE[0]}..{TIMEOUT_RANGE[1]} seconds")
        if not GAS_CAP_RANGE[0] <= self.gas_cap <= GAS_CAP_RANGE[1]:
            raise _invalid(f"rpc_gas_cap must be {GAS_CAP_RANGE[0]}..{GAS_CAP_RANGE[1]}")
        for factory in self.factories:
            if _ADDRESS.fullmatch(factory) is None:
                raise _invalid(f"erc6492_factories: {factory[:44]!r} is not a 0x address")


class _Wrapped(NamedTuple):
    """An ERC-6492 signature: ``abi.encode(factory, factoryCalldata, signature) ‖ suffix``."""

    factory: bytes
    factory_calldata: bytes
    signature: bytes


class ContractWallets:
    """Checks contract-wallet signatures on the chains that have an RPC configured."""

    def __init__(
        self,
        config: ContractWalletConfig | None = None,
        *,
        observer: RpcObserver | None = None,
    ) -> None:
        self.config = config or ContractWalletConfig()
        self._factories = frozenset(bytes.fromhex(a[2:]) for a in self.config.factories)
        self._observer = observer
        # The factory and the wallet get at most half the cap each; the EVM's 63/64 rule
        # leaves the check enough to finish even when both burn all they are given.
        self._call_gas = self.config.gas_cap // 2
        self._rpc = RpcClient(
            timeout=self.config.timeout,
            max_response_bytes=MAX_RPC_RESPONSE_BYTES,
            max_connections=MAX_RPC_CONNECTIONS,
        )

    async def verify(
        self,
        account: Account,
        digest: bytes,
        signature: str,
        *,
        offline: KeyproofError,
        refused: Callable[[], KeyproofError],
    ) -> None:
        """Raise unless the contract at ``account`` accepts ``signature`` over ``digest``.

        ``offline`` is how the offline check refused; on a chain without an RPC a
        65-byte signature keeps that verdict. ``refused`` builds the error for a
        contract that answers "invalid". ``Unavailable`` when the chain cannot be asked.
        """
        raw = _decode(signature)
        wrapped = _unwrap(raw)
        url = self.config.rpc_urls.get(account.caip2)
        if url is None:
            raise _without_rpc(account.caip2, offline, raw, wrapped)
        if wrapped is not None and self._factories and wrapped.factory not in self._factories:
            raise SignatureInvalid("signature_invalid", "the ERC-6492 factory is not allowed")
        data = self._call_data(account, digest, raw, wrapped)
        if not await self._accepted(account.caip2, url, data):
            raise refused()

    def _call_data(
        self, account: Account, digest: bytes, raw: bytes, wrapped: _Wrapped | None
    ) -> bytes:
        signer = bytes.fromhex(account.address[2:])
        if wrapped is None:
            return _check.call_data(signer, digest, raw, call_gas=self._call_gas)
        return _check.call_data(
            signer,
            digest,
            wrapped.signature,
            factory=wrapped.factory,
            factory_calldata=wrapped.factory_calldata,
            call_gas=self._call_gas,
        )

    async def _accepted(self, chain: str, url: str, data: bytes) -> bool:
        started = time.perf_counter()
        failure: str | None = None
        try:
            word = await self._rpc.eth_call(url, data, gas=self.config.gas_cap)
            if word not in (_VALID, _INVALID):
                raise RpcFailure("bad_response")
        except RpcFailure as exc:
            failure = exc.reason
            logger.warning("eth_call on %s failed: %s", chain, failure)
            raise Unavailable(
                "upstream_unavailable",
                f"the {chain} node did not answer the signature check; retry",
                retry_after=RETRY_AFTER,
            ) from None
        finally:
            if self._observer is not None:
                self._observer(chain, time.perf_counter() - started, failure)
        return word == _VALID

    async def aclose(self) -> None:
        """Close the connections to the nodes."""
        await self._rpc.aclose()


def _invalid(message: str) -> ConfigurationError:
    return ConfigurationError("invalid_setting", message)


def _decode(signature: str) -> bytes:
    if len(signature) > MAX_CONTRACT_SIGNATURE_CHARS or _HEX.fullmatch(signature) is None:
        raise MalformedSignature(
            "malformed_signature",
            f"a contract-wallet signature is 0x-prefixed hex of 1..{MAX_CONTRACT_SIGNATURE_BYTES}"
            " bytes",
        )
    return bytes.fromhex(signature[2:])


def _unwrap(raw: bytes) -> _Wrapped | None:
    """The parts of an ERC-6492 signature, or ``None`` when ``raw`` is not one."""
    if not raw.endswith(ERC6492_SUFFIX):
        return None
    try:
        return _Wrapped(*decode_address_bytes_bytes(raw[: -len(ERC6492_SUFFIX)]))
    except ValueError:
        raise MalformedSignature(
            "malformed_signature", "an ERC-6492 signature must wrap (address, bytes, bytes)"
        ) from None


def _without_rpc(
    chain: str, offline: KeyproofError, raw: bytes, wrapped: _Wrapped | None
) -> KeyproofError:
    """Without an RPC only EOA signatures verify: a 65-byte one keeps its offline verdict."""
    if len(raw) == 65 and wrapped is None and not isinstance(offline, SignatureInvalid):
        return offline
    what = "signature does not verify" if len(raw) == 65 else "a contract-wallet signature"
    return SignatureInvalid(
        "signature_invalid", f"{what}: no RPC is configured for {chain} to check contract wallets"
    )
