"""Smart-contract wallets (EIP-1271, ERC-6492), checked with ``eth_call`` only (§1.2).

:class:`ContractWallets` is what the sign-in service and :class:`~keyproof.actions.ActionVerifier`
ask when an Ethereum signature does not recover to its account offline.
"""

from keyproof.chain._wallets import (
    ERC6492_SUFFIX,
    MAX_CONTRACT_SIGNATURE_BYTES,
    MAX_CONTRACT_SIGNATURE_CHARS,
    MAX_RPC_RESPONSE_BYTES,
    ContractWalletConfig,
    ContractWallets,
    RpcObserver,
)

__all__ = [
    "ERC6492_SUFFIX",
    "MAX_CONTRACT_SIGNATURE_BYTES",
    "MAX_CONTRACT_SIGNATURE_CHARS",
    "MAX_RPC_RESPONSE_BYTES",
    "ContractWalletConfig",
    "ContractWallets",
    "RpcObserver",
]
