"""The server's batched writes: access lines and response bytes leave together at the
end of an event-loop iteration, in order, and nothing waiting is lost on close."""

from __future__ import annotations

import asyncio
import io
import logging
import socket

from keyproof.server._logs import BatchingStreamHandler
from keyproof.server._transport import CoalescingTransport


def _record(name: str, message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "msg": message, "levelno": logging.INFO})


def test_access_lines_wait_for_the_end_of_the_loop_iteration():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)

    async def serve() -> list[str]:
        seen = []
        handler.handle(_record("keyproof.access", "first"))
        handler.handle(_record("keyproof.access", "second"))
        seen.append(stream.getvalue())
        await asyncio.sleep(0)
        seen.append(stream.getvalue())
        return seen

    during, after = asyncio.run(serve())
    assert during == ""
    assert after == "first\nsecond\n"


def test_other_lines_are_written_at_once_after_the_waiting_ones():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)

    async def serve() -> str:
        handler.handle(_record("keyproof.access", "request"))
        handler.handle(_record("uvicorn.error", "Shutting down"))
        return stream.getvalue()

    assert asyncio.run(serve()) == "request\nShutting down\n"


def test_without_a_running_loop_lines_are_written_at_once_and_flush_writes_the_rest():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.handle(_record("keyproof.access", "outside a loop"))
    assert stream.getvalue() == "outside a loop\n"

    async def serve() -> None:
        handler.handle(_record("keyproof.access", "last"))

    loop = asyncio.new_event_loop()
    loop.run_until_complete(serve())
    loop.close()  # the scheduled write never ran
    handler.flush()
    assert stream.getvalue() == "outside a loop\nlast\n"


async def _transport_pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    peer.setblocking(False)
    return transport, peer


def test_writes_of_one_iteration_leave_together_and_in_order():
    async def exchange() -> tuple[bytes, bytes]:
        transport, peer = await _transport_pair()
        loop = asyncio.get_running_loop()
        coalescing = CoalescingTransport(transport, loop)
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(memoryview(b"body"))
        try:
            before = peer.recv(100)
        except BlockingIOError:
            before = b""
        await asyncio.sleep(0)
        received = await loop.sock_recv(peer, 100)
        coalescing.close()
        peer.close()
        return before, received

    before, received = asyncio.run(exchange())
    assert before == b""
    assert received == b"HTTP/1.1 200 OK\r\n\r\nbody"


def test_close_sends_what_waits_first():
    async def exchange() -> bytes:
        transport, peer = await _transport_pair()
        loop = asyncio.get_running_loop()
        coalescing = CoalescingTransport(transport, loop)
        coalescing.write(b"last answer")
        coalescing.close()
        data = b""
        while chunk := await loop.sock_recv(peer, 100):
            data += chunk
        peer.close()
        return data

    assert asyncio.run(exchange()) == b"last answer"
