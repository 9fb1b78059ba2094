"""Headers on every response of the app.

``X-Content-Type-Options: nosniff`` (https://fetch.spec.whatwg.org/#x-content-type-options-header)
forbids browsers to guess a type other than the declared one, so no JSON body or
metrics text is ever rendered as a script or a page. ``Cache-Control: no-store`` is set
by each endpoint that returns or takes a token (:func:`keyproof._httpio.json_response`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["NosniffMiddleware"]

NOSNIFF = (b"x-content-type-options", b"nosniff")


class NosniffMiddleware:
    """Pure ASGI: adds ``X-Content-Type-Options: nosniff`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != NOSNIFF[0]]
                message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await self.app(scope, receive, send_nosniff)
