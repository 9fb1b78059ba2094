"""keyproof: prove control of a key by signing a challenge; receive a scoped token.

The package has two sides (specs/protocol.md §1). The verifier side, installed by
``pip install keyproof``, is what resource servers import: :mod:`keyproof.tokens`,
:mod:`keyproof.guard`, :mod:`keyproof.actions`, the message formats in
:mod:`keyproof.messages`, :mod:`keyproof.crypto` and :mod:`keyproof.stores`. The issuer
lives in :mod:`keyproof.server` and needs ``pip install 'keyproof[server]'``.
"""

from __future__ import annotations

from keyproof.errors import KeyproofError

__all__ = ["KeyproofError", "__version__"]

__version__ = "0.1.0"
