"""keyproof: prove control of a key by signing a challenge; receive a scoped token.

Library entry points live in their modules (``keyproof.messages.siwe``,
``keyproof.guard``, ``keyproof.tokens``); this package exports the few names most
programs start from, imported lazily so that ``import keyproof.messages.siwe`` stays
light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyproof.app import create_app
    from keyproof.config import Settings
    from keyproof.errors import KeyproofError
    from keyproof.service import Service

__all__ = ["KeyproofError", "Service", "Settings", "__version__", "create_app"]

__version__ = "0.1.0"

_LAZY = {
    "KeyproofError": "keyproof.errors",
    "Service": "keyproof.service",
    "Settings": "keyproof.config",
    "create_app": "keyproof.app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keyproof' has no attribute {name!r}")
