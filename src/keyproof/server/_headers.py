"""Headers on every response of the app.

``X-Content-Type-Options: nosniff`` (https://fetch.spec.whatwg.org/#x-content-type-options-header)
forbids browsers to guess a type other than the declared one, so no JSON body or
metrics text is ever rendered as a script or a page. ``Cache-Control: no-store`` is set
by each endpoint that returns or takes a token (:func:`keyproof._httpio.json_response`).
"""

from __future__ import annotations

__all__ = ["NOSNIFF"]

NOSNIFF = (b"x-content-type-options", b"nosniff")
"""Added to every HTTP response by :class:`~keyproof.server._edge.EdgeMiddleware`."""
