"""Real local-key wallets that sign the way browser wallets and agents do."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct


@dataclass
class EthWallet:
    """An Ethereum EOA signing with ``personal_sign`` (EIP-191)."""

    account: Account

    @classmethod
    def create(cls) -> EthWallet:
        return cls(Account.create())

    @property
    def address(self) -> str:
        return str(self.account.address)

    def caip10(self, chain: int = 1) -> str:
        return f"eip155:{chain}:{self.address}"

    def sign(self, text: str) -> str:
        signed = self.account.sign_message(encode_defunct(text=text))
        return "0x" + bytes(signed.signature).hex()
