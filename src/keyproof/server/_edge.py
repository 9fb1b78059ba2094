"""The one middleware at the edge of the app: everything each request gets on its way
in and out, in a single pure ASGI layer.

Per HTTP request, in this order: a request id (:func:`~keyproof.server._logs.new_request_id`)
in the log context; a CORS preflight answered, when configured (:mod:`._cors`); the body
deadline on ``receive`` (:class:`~keyproof.server._slowclients.BodyDeadline`). On the
response start: ``Connection: close`` after a late body, the CORS labels of a browser
endpoint, ``X-Content-Type-Options: nosniff`` (:mod:`._headers`) and ``X-Request-ID``.
When the request ends, however it ends: one access line and one metrics observation; a
client that left before its body arrived is logged with ``499`` (as nginx does), not as
a server error, since no one is left to answer.

One layer instead of one per concern: each layer wraps ``send`` and copies every
response-start message again, and that showed in profiles of small requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyproof.server._cors import Cors, label, preflight
from keyproof.server._headers import NOSNIFF
from keyproof.server._logs import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    access_log_enabled,
    log_access,
    new_request_id,
)
from keyproof.server._metrics import Metrics
from keyproof.server._slowclients import BodyDeadline

__all__ = ["EdgeMiddleware"]

_REPLACED = frozenset({NOSNIFF[0], REQUEST_ID_HEADER})
CLIENT_CLOSED_REQUEST = 499


class EdgeMiddleware:
    """Request id, CORS, body deadline, response headers, access log and metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        client_ip: Callable[[Scope], str],
        body_timeout: float,
        cors: Cors | None = None,
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._client_ip = client_ip
        self._body_timeout = body_timeout
        self._cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(scope)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500
        body = BodyDeadline(receive, self._body_timeout)
        cors_method = self._cors.method(scope) if self._cors is not None else None
        origin = None

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                if body.timed_out:
                    headers.append((b"connection", b"close"))
                if cors_method is not None:
                    headers = label(headers, origin)
                headers = [h for h in headers if h[0] not in _REPLACED]
                headers.append(NOSNIFF)
                headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            if self._cors is not None and cors_method is not None:
                origin, is_preflight = self._cors.origin(scope)
                if origin is not None and is_preflight:
                    await preflight(origin, cors_method, _unlabelled(send, id_header))
                    status = 204
                    return
            await self.app(scope, body.receive, send_edge)
        except ClientDisconnect:
            status = CLIENT_CLOSED_REQUEST
        finally:
            seconds = time.perf_counter() - started
            if access_log_enabled():
                self._log_access(scope, request_id, status, seconds)
            self._metrics.observe_request(scope, status, seconds)
            REQUEST_ID.reset(token)

    def _log_access(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        log_access(
            {
                "request_id": request_id,
                "method": scope.get("method"),
                "path": self._metrics.endpoint(str(scope.get("path"))),
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client_ip": self._client_ip(scope),
            }
        )


def _unlabelled(send: Send, id_header: tuple[bytes, bytes]) -> Send:
    """``send`` for a preflight: it carries its own CORS headers; ``nosniff`` and the id."""

    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0] not in _REPLACED]
            message = {**message, "headers": [*headers, NOSNIFF, id_header]}
        await send(message)

    return send_headers
