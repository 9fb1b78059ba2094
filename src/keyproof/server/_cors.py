"""CORS for the endpoints a browser app calls, and only for the configured origins.

A request whose ``Origin`` is listed, to one of the browser endpoints, gets
``Access-Control-Allow-Origin`` with that origin and the headers a script may read; a
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered ``204``.
Every other request passes through untouched and gets no CORS header (a preflight from
an unlisted origin is then ``405`` like any ``OPTIONS``), so a browser keeps such a
page from reading any answer. Credentials are never allowed: tokens travel in headers
and bodies, not cookies. Starlette's ``CORSMiddleware`` was not enough here: it sends
``Access-Control-Expose-Headers`` and preflight headers to unlisted origins too.
(Fetch standard §3.2, "CORS protocol".)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Scope, Send

__all__ = ["ALLOW_HEADERS", "EXPOSE_HEADERS", "Cors", "label", "preflight"]

EXPOSE_HEADERS: Final = ("WWW-Authenticate", "Retry-After", "X-Request-ID", "DPoP-Nonce")
"""Response headers a browser script may read: the DPoP flow needs the server's nonce."""
ALLOW_HEADERS: Final = ("Content-Type", "DPoP")
"""Request headers a browser script may send to the browser endpoints (a DPoP proof)."""
PREFLIGHT_MAX_AGE: Final = 600


class Cors:
    """Which requests are labelled for ``origins``, on the ``routes`` given; applied by
    :class:`~keyproof.server._edge.EdgeMiddleware`.

    ``routes`` maps each browser endpoint's path to its one method.
    """

    def __init__(self, *, origins: frozenset[str], routes: Mapping[str, str]) -> None:
        self._origins = origins
        self._routes = dict(routes)

    def method(self, scope: Scope) -> str | None:
        """The method of the browser endpoint ``scope`` asks for, None for other paths."""
        return self._routes.get(scope.get("path", ""))

    def origin(self, scope: Scope) -> tuple[str | None, bool]:
        """The request's listed origin (None if not exactly one listed ``Origin``) and
        whether the request is a preflight from it."""
        headers = Headers(scope=scope)
        origins = headers.getlist("origin")
        origin = origins[0] if len(origins) == 1 and origins[0] in self._origins else None
        return origin, origin is not None and _is_preflight(scope, headers)


def _is_preflight(scope: Scope, headers: Headers) -> bool:
    return scope["method"] == "OPTIONS" and "access-control-request-method" in headers


async def preflight(origin: str, method: str, send: Send) -> None:
    """Answer a preflight from a listed ``origin`` to an endpoint of ``method``."""
    headers = MutableHeaders()
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Allow-Methods"] = method
    headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
    headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    headers["Vary"] = "Origin"
    await send({"type": "http.response.start", "status": 204, "headers": headers.raw})
    await send({"type": "http.response.body", "body": b""})


def label(raw: list[tuple[bytes, bytes]], origin: str | None) -> list[tuple[bytes, bytes]]:
    """``raw`` with the CORS headers for ``origin`` (none if None) and ``Vary``.

    ``Vary: Origin`` goes on every answer of a browser endpoint, so a shared cache
    never hands one origin's labelled answer (the JWKS is cacheable) to another.
    """
    headers = MutableHeaders(raw=raw)
    headers.add_vary_header("Origin")
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    return headers.raw
