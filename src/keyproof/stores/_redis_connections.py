"""The Redis store's connections: redis-py connections, checked out from a plain list.

redis-py's client and ``BlockingConnectionPool`` spend more CPU time on each command
than the command's own round trip: pool bookkeeping under a condition variable, a
probe of each connection for stray data, retry and telemetry wrappers. Measured on
one loop here, a ``GET`` through the client costs 150 to 200 µs of CPU time, through a
bare redis-py connection 70 to 120 µs; a login sends three commands. So the store
takes the settings a ``BlockingConnectionPool`` parses from its URL (address, TLS,
credentials, database, timeouts, health checks, limits) and keeps its own connections
made from them, with commands packed by hiredis (redis-py parses replies with it too):

- at most ``max_connections`` at once; a command waits up to the pool's ``timeout`` for
  one to come free, then fails with ``redis.TimeoutError``;
- a connection goes back to the list in a known state: after a whole reply, or
  disconnected (any exception: an error reply, a timeout, a cancelled caller, a broken
  socket), and redis-py connects it afresh on its next use, so a reply can never reach
  the wrong caller;
- a command that meets a broken connection (``redis.ConnectionError``) is sent once
  more, on a fresh connection, after ``RETRY_DELAY``; a timed-out one is not, since it
  may have run. The store's module documentation says why a retry is safe. The idle
  connections are disconnected then too: after a restart of Redis every one of them is
  dead, and redis-py's pool, which probed each connection it lent, never sent a
  command on one.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RETRY_DELAY", "Connections"]

RETRY_DELAY: Final = 0.04
"""Seconds before a command is sent again after its connection broke."""


class Connections:
    """Connections made from ``pool``'s settings; ``pool`` itself makes and lends none."""

    def __init__(self, pool: BlockingConnectionPool) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._free = asyncio.Semaphore(pool.max_connections)
        self._closed = False

    @property
    def pool(self) -> BlockingConnectionPool:
        """The settings every connection is made from."""
        return self._pool

    async def execute(self, *args: bytes | str | int) -> Any:
        """The reply to one command; an error reply raises its ``ResponseError``."""
        try:
            return await self._once(args)
        except RedisConnectionError:
            # One broken connection mostly means all broke (a restart, a failover): the
            # idle ones start afresh too, so the retry cannot meet another dead one.
            for connection in list(self._idle):
                await connection.disconnect(nowait=True)
            await asyncio.sleep(RETRY_DELAY)
            return await self._once(args)

    async def close(self) -> None:
        """Disconnect every idle connection; one in use is disconnected when it returns."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()

    async def _once(self, args: tuple[bytes | str | int, ...]) -> Any:
        # In C (redis-py's asyncio packer is Python); hiredis's stub types a 1-tuple.
        packed = pack_command(args)  # type: ignore[arg-type]
        await self._wait_for_slot()
        try:
            connection = self._idle.pop() if self._idle else self._new_connection()
            try:
                await connection.send_packed_command(packed)
                return await connection.read_response()
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
            finally:
                await self._check_in(connection)
        finally:
            self._free.release()

    def _new_connection(self) -> AbstractConnection:
        return self._pool.connection_class(**self._pool.connection_kwargs)

    async def _wait_for_slot(self) -> None:
        if self._closed:  # not a ConnectionError: never retried
            raise RedisError("the store is closed")
        if not self._free.locked():
            await self._free.acquire()  # returns at once
            return
        try:
            async with asyncio.timeout(self._pool.timeout):
                await self._free.acquire()
        except TimeoutError:
            raise RedisTimeoutError("no free Redis connection in time") from None

    async def _check_in(self, connection: AbstractConnection) -> None:
        if self._closed:
            await connection.disconnect(nowait=True)
        else:
            self._idle.append(connection)
