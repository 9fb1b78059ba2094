"""Local servers that stand for a chain's node gone wrong, on 127.0.0.1 and a free port.

``down`` is a port nobody listens on; ``hang`` accepts the connection, reads the
request and never answers; the others answer at once with an HTTP 500, non-JSON, an
oversized body, a JSON-RPC error, or a result that is not the one word keyproof's
check returns.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from keyproof.testing import free_port

HANG_LIMIT_SECONDS: Final = 60.0
ANSWERS: Final = {
    "http_500": (500, b"internal error"),
    "not_json": (200, b"<html>not a node</html>"),
    "too_large": (200, b'{"jsonrpc":"2.0","id":1,"result":"0x' + b"00" * 20_000 + b'"}'),
    "rpc_error": (200, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"down"}}'),
    "odd_word": (200, b'{"jsonrpc":"2.0","id":1,"result":"0x' + b"00" * 31 + b'02"}'),
}


class _Answering(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (500, b"")

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        status, body = self.answer
        # Answer the id that was asked, so that only the named fault is wrong.
        body = body.replace(b'"id":1,', b'"id":%d,' % request["id"])
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Hanging(socketserver.BaseRequestHandler):
    released: threading.Event

    def handle(self) -> None:
        self.request.recv(65536)
        self.released.wait(HANG_LIMIT_SECONDS)


@contextmanager
def broken_node(fault: str) -> Iterator[str]:
    """Serve ``fault`` (``down``, ``hang`` or a key of :data:`ANSWERS`); yield its URL."""
    if fault == "down":
        yield f"http://127.0.0.1:{free_port()}/v2/node-api-key-SECRET"
        return
    released = threading.Event()
    server: socketserver.TCPServer
    if fault == "hang":
        handler = type("Hanging", (_Hanging,), {"released": released})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    else:
        handler = type("Answering", (_Answering,), {"answer": ANSWERS[fault]})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/node-api-key-SECRET"
    finally:
        released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
