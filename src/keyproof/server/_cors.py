"""CORS for the endpoints a browser app calls, and only for the configured origins.

Pure ASGI. A request whose ``Origin`` is listed, to one of the browser endpoints, gets
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ALLOW_HEADERS", "EXPOSE_HEADERS", "CorsMiddleware"]

EXPOSE_HEADERS: Final = ("WWW-Authenticate", "Retry-After", "X-Request-ID", "DPoP-Nonce")
"""Response headers a browser script may read: the DPoP flow needs the server's nonce."""
ALLOW_HEADERS: Final = ("Content-Type", "DPoP")
"""Request headers a browser script may send to the browser endpoints (a DPoP proof)."""
PREFLIGHT_MAX_AGE: Final = 600


class CorsMiddleware:
    """Answer preflights and label answers for ``origins`` on the ``routes`` given.

    ``routes`` maps each browser endpoint's path to its one method.
    """

    def __init__(self, app: ASGIApp, *, origins: frozenset[str], routes: Mapping[str, str]):
        self.app = app
        self._origins = origins
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = self._routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if method is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origins = headers.getlist("origin")
        origin = origins[0] if len(origins) == 1 and origins[0] in self._origins else None
        if origin is not None and _is_preflight(scope, headers):
            await _preflight(origin, method, send)
            return
        await self.app(scope, receive, _labelled(send, origin))


def _is_preflight(scope: Scope, headers: Headers) -> bool:
    return scope["method"] == "OPTIONS" and "access-control-request-method" in headers


async def _preflight(origin: str, method: str, send: Send) -> None:
    headers = MutableHeaders()
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Allow-Methods"] = method
    headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
    headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    headers["Vary"] = "Origin"
    await send({"type": "http.response.start", "status": 204, "headers": headers.raw})
    await send({"type": "http.response.body", "body": b""})


def _labelled(send: Send, origin: str | None) -> Send:
    """``send`` that adds the CORS headers for ``origin`` (none if None) and ``Vary``.

    ``Vary: Origin`` goes on every answer of a browser endpoint, so a shared cache
    never hands one origin's labelled answer (the JWKS is cacheable) to another.
    """

    async def send_labelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers.add_vary_header("Origin")
            if origin is not None:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
        await send(message)

    return send_labelled
