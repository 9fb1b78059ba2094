"""``SIGHUP`` for a running server: reopen what logrotate moved, never stop.

Without a handler, ``SIGHUP`` terminates a Python process; ``systemctl reload`` and a
logrotate ``postrotate`` script send it expecting the server to carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["on_hangup"]


@contextlib.contextmanager
def on_hangup(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` on each ``SIGHUP`` while the block runs.

    Only the main thread's event loop can receive signals: an app served from another
    thread (a test client, an embedding application) leaves ``SIGHUP`` alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, callback)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
