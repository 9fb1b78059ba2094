"""One lock for every thread and task sharing a :class:`~keyproof_client.KeyproofAuth`.

A refresh token is single use, and the issuer ends the whole session when one comes
back (specs/protocol.md §11): two renewals of one session must never overlap, whether
they come from threads of a sync client, tasks of an async one, or both at once. So one
thread lock guards renewal. Threads block on it; a task first waits its turn behind the
other tasks of its event loop (an anyio lock, as httpx's documentation does it), then
takes the thread lock without blocking its loop, trying again every few milliseconds
while a thread or a task of another loop holds it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Final

import anyio

_FIRST_WAIT: Final = 0.001
_LONGEST_WAIT: Final = 0.05


class RenewalLock:
    """Held while a sign-in or a refresh runs; never while a request is sent."""

    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._task_lock = anyio.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            yield

    @contextlib.asynccontextmanager
    async def held_by_task(self) -> AsyncIterator[None]:
        async with self._task_lock:
            wait = _FIRST_WAIT
            while not self._thread_lock.acquire(blocking=False):
                await anyio.sleep(wait)
                wait = min(wait * 2, _LONGEST_WAIT)
            try:
                yield
            finally:
                self._thread_lock.release()
