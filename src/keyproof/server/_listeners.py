"""Several worker processes on one port, each with a listening socket of its own.

uvicorn's workers share one listening socket, bound by the supervisor: a new connection
goes to whichever worker wakes first, and that worker accepts every connection waiting.
A client that opens its connections at once (a reverse proxy's keep-alive pool, a load
generator) can then land all of them on one worker while the others idle. On Linux each
worker here binds a socket of its own to the address with ``SO_REUSEPORT``, and the
kernel gives each new connection to one of the workers' sockets by a hash of its
addresses: connections spread evenly, whoever opens them. The kernel joins only sockets
of the same user in one such group. The supervisor keeps the address bound (with
``SO_REUSEPORT`` too, never listening, so no connection is queued on it) while workers
come and go.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from types import ModuleType
from typing import Any

from keyproof.server._startup import address_family, listen_error

__all__ = ["WorkerListener", "bind_reuse_port", "own_sockets_supported", "serve_workers"]


def own_sockets_supported() -> bool:
    """Whether each worker can have its own socket: ``SO_REUSEPORT`` spreads connections
    across sockets on Linux only (elsewhere the last socket bound may take them all)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening."""
    sock = socket.socket(address_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class WorkerListener:
    """The socket a worker process listens on, as the supervisor hands it over.

    uvicorn pickles the sockets it gives each worker; this one unpickles, in the worker,
    as a new socket of that worker's own (:func:`bind_reuse_port`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return bind_reuse_port, (self.host, self.port)


def serve_workers(uvicorn: ModuleType, app: str, host: str, port: int, **options: Any) -> None:
    """uvicorn's supervisor running ``options["workers"]`` processes of the app factory
    ``app``, each on a socket of its own where the platform spreads connections across
    such sockets, else on the one socket uvicorn shares among them."""
    if not own_sockets_supported():
        uvicorn.run(app, factory=True, host=host, port=port, **options)
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, factory=True, host=host, port=port, **options)
    try:
        held = bind_reuse_port(host, port)
    except OSError as exc:
        raise listen_error(exc, host, port, "port") from None
    with held, contextlib.suppress(KeyboardInterrupt):
        listeners: list[Any] = [WorkerListener(host, port)]
        Multiprocess(config, sockets=listeners).run()
