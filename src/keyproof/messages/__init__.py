"""Sign-in message formats and the capabilities written into them.

- :mod:`keyproof.messages.siwe`: Sign-In with Ethereum (ERC-4361).
- :mod:`keyproof.messages.recap`: ReCaps (EIP-5573), the scopes a message delegates.

The field grammar every format shares lives in the private ``_fields`` module.
Submodules are imported on use, so each stays as light as its own dependencies.
"""

__all__ = ["recap", "siwe"]
