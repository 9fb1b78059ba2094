"""The issuer: configuration, policy, signing keys, the sign-in service and its HTTP app.

Needs the ``server`` extra (``pip install 'keyproof[server]'``). The names below are
imported on use, so ``import keyproof.server.config`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyproof.server.app import create_app
    from keyproof.server.components import build_components
    from keyproof.server.config import Settings
    from keyproof.server.service import Service

__all__ = ["Service", "Settings", "build_components", "create_app"]

_LAZY = {
    "Service": "keyproof.server.service",
    "Settings": "keyproof.server.config",
    "build_components": "keyproof.server.components",
    "create_app": "keyproof.server.app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keyproof.server' has no attribute {name!r}")
