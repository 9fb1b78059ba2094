"""A transport that sends what one event-loop iteration writes to a connection at once.

uvicorn writes a response's status line and headers, then its body, each with its own
``transport.write``, and uvloop sends each at once: two system calls per response.
Wrapped in :class:`CoalescingTransport`, the writes of one loop iteration wait in a
list and leave together at the end of the iteration, as one send; ``close`` sends
what waits first, so nothing written is lost or reordered.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescingTransport"]


class CoalescingTransport:
    """Delegates to ``transport``; ``write`` waits for the end of the loop iteration."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._waiting:
            self._loop.call_soon(self.send_waiting)
        self._waiting.append(bytes(data))

    def send_waiting(self) -> None:
        if not self._waiting:
            return
        data = b"".join(self._waiting)
        self._waiting.clear()
        if not self._transport.is_closing():  # a lost connection takes no more writes
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.send_waiting()
        self._transport.close()

    def abort(self) -> None:
        self._waiting.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._waiting))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
