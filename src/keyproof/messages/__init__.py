"""Sign-in message formats and the capabilities written into them.

- :mod:`keyproof.messages.agent`: the did:key sign-in text for agent keys (CAIP-122 style).
- :mod:`keyproof.messages.recap`: ReCaps (EIP-5573), the scopes a message delegates.
- :mod:`keyproof.messages.siwe`: Sign-In with Ethereum (ERC-4361).
- :mod:`keyproof.messages.siws`: Sign In With Solana (SIWS).

SIWE and the did:key text share one layout, rendered and parsed by the private
``_layout`` module; the field grammar every format shares lives in ``_fields`` and the
line reading in ``_lines``. Submodules are imported on use, so each stays as light as
its own dependencies.
"""

__all__ = ["agent", "recap", "siwe", "siws"]
