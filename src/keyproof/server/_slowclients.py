"""Deadlines for clients that send a request slowly, so they cannot hold the server.

uvicorn bounds only the idle time between requests: a client that opens a connection
and sends its headers or body a byte at a time holds a connection and a task for as
long as it likes (github.com/encode/uvicorn/issues/157). keyproof adds two deadlines:

- :class:`HeaderDeadlineProtocol`: the request line and headers must arrive within
  ``header_timeout`` seconds of the connection opening, or of the first byte of the
  next request on a kept-alive connection. Past it the connection is answered ``408``
  and closed; the app never sees the request.
  The request line and headers are also capped at ``max_header_bytes``: past it the
  connection is answered ``431`` and closed, before the parser holds any more of them
  (httptools has no cap of its own, and joins a long header's pieces one by one).
  What the parser refuses is answered ``400 invalid_http`` in the same JSON shape.
- :class:`BodyDeadline`: the body must arrive within ``body_timeout``
  seconds of the headers. Past it the request fails with ``408 request_timeout`` and
  the connection is closed.

The number of open connections is capped by uvicorn's ``limit_concurrency``
(``max_connections``); beyond it uvicorn answers ``503`` itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

from starlette.types import Message, Receive
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keyproof._httpio import error_body
from keyproof.errors import HeadersTooLarge, InvalidRequest, KeyproofError, RequestTimeout
from keyproof.server._transport import CoalescingTransport

__all__ = ["BodyDeadline", "HeaderDeadlineProtocol"]


def _closing_response(error: KeyproofError, reason: str) -> bytes:
    """An error response written by the protocol itself, before any app sees the request."""
    body = json.dumps(error_body(error), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {error.status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "x-content-type-options: nosniff\r\n"
        "cache-control: no-store\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on the request line
    and headers, writing through a
    :class:`~keyproof.server._transport.CoalescingTransport`."""

    def __init__(
        self, *args: Any, header_timeout: float, max_header_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            # Not in a request line or headers. A read that begins the next request on a
            # kept-alive connection is fed whole, so its headers may pass the cap by at
            # most one read before the count, started at their first byte, refuses them.
            super().data_received(data)
            return
        room = self.max_header_bytes - self._header_bytes
        self._header_bytes += len(data)
        if len(data) <= room:
            super().data_received(data)
            return
        if room > 0:  # headers that end within the cap complete here; the rest is body
            super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._deadline is not None:
            self._refuse(_closing_response(self._too_large(), "Request Header Fields Too Large"))
            return
        super().data_received(data[room:])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_bytes = 0
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        within = f"{self.header_timeout:g} s"
        error = RequestTimeout(
            "request_timeout", f"the request headers did not arrive within {within}"
        )
        self._refuse(_closing_response(error, "Request Timeout"))

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses, answered in the shape of every other error."""
        error = InvalidRequest("invalid_http", "the request is not valid HTTP/1.1")
        self._disarm()
        self.transport.write(_closing_response(error, "Bad Request"))
        self.transport.close()

    def _unsupported_upgrade_warning(self) -> None:
        """keyproof speaks no other protocol: an ``Upgrade`` request is served as HTTP."""

    def _too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            "headers_too_large",
            f"the request line and headers exceed {self.max_header_bytes} bytes",
        )

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        # A pipelined request may still be answering: then close without a response of ours.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(response)
        self.transport.close()


class BodyDeadline:
    """``receive`` that fails with ``RequestTimeout`` once the body is late.

    The deadline covers the request body only; once it is complete, ``receive`` (for
    example waiting for a disconnect) is not limited, and a request whose body the
    server has already read whole (the usual case: it came with the headers) sets no
    timer at all. The error's response asks the server to close the connection
    (``timed_out``), so the rest of a late body is never read. Applied by
    :class:`~keyproof.server._edge.EdgeMiddleware`.
    """

    __slots__ = ("_receive", "_started", "_timeout", "body_complete", "timed_out")

    def __init__(self, receive: Receive, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout
        # Not the loop's clock: asking for the running loop costs a getpid() system
        # call, and most requests never wait for their body.
        self._started = time.monotonic()
        self.body_complete = False
        self.timed_out = False

    async def receive(self) -> Message:
        if self.body_complete:
            return await self._receive()
        if _all_arrived(self._receive):  # nothing left to wait for: no timer to set
            message = await self._receive()
            self.body_complete = True
            return message
        try:
            async with asyncio.timeout(self._timeout - (time.monotonic() - self._started)):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise RequestTimeout(
                "request_timeout",
                f"the request body did not arrive within {self._timeout:g} s",
            ) from None
        self.body_complete = message["type"] != "http.request" or not message.get("more_body")
        return message


def _all_arrived(receive: Receive) -> bool:
    """True when the server has read the whole request already, so ``receive`` answers
    without waiting: uvicorn's request cycle sets ``more_body`` false once the request's
    last byte is in (a server without that attribute always gets the timer)."""
    return getattr(getattr(receive, "__self__", None), "more_body", True) is False
