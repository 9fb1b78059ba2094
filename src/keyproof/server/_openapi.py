"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

The document is ``specs/openapi.yaml``, shipped in the package as ``openapi.yaml`` (a
link in the source tree, a copy in a built wheel); a test keeps its paths in step with
``keyproof.server.app.ROUTES``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

__all__ = ["load_openapi"]


def load_openapi() -> dict[str, Any]:
    """The document as a JSON-ready mapping; read once, when the app is built."""
    text = resources.files("keyproof.server").joinpath("openapi.yaml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document
