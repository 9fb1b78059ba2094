"""Shared store on Redis for several replicas on several hosts (``redis://host:port/db``).

Each entry is one Redis key ``<prefix><kind>:<key>`` with a millisecond TTL; Redis owns
the clock, so expiry is not injectable. Every operation, and every batch of them, is one
run of one Lua script, atomic on the server: it runs them in order and stops at a
refusal. ``add`` is ``SET NX PX``, ``take`` is ``GETDEL`` (Redis >= 6.2), ``hit`` an
``INCR`` that sets the TTL in the same step, so a counter never lives forever. A
per-deployment ``prefix`` lets several deployments share one database.

Failures of any kind (refused, timed out, protocol or server error) surface as
``Unavailable("store_unavailable")`` so callers fail closed.

A command is retried once after a connection error
(:mod:`keyproof.stores._redis_connections`). If the first attempt had already run, the
retry errs on the safe side: a retried ``GETDEL`` finds nothing (the redeem is refused
as ``nonce_used`` and the client asks a new challenge), a retried ``SET NX`` reports the
entry as present, and a retried increment counts a request twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Awaitable, Sequence
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from keyproof.errors import ConfigurationError, Unavailable
from keyproof.stores import DEFAULT_REDIS_PREFIX
from keyproof.stores._redis_connections import Connections
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Hit, Op, Outcome, Take, check_ops, outcome_of

__all__ = ["SCAN_COUNT", "RedisStore"]

SCAN_COUNT: Final = 1000

# One batch (keyproof.stores.ops) in one step. Three ARGV per key: the operation and
# two arguments. 'h' is a hit (window ms, limit or ''); an 'o' right after it is the
# hit that runs in its place when it is over its limit, and is skipped otherwise.
# hit() also repairs a counter left without a TTL, whatever wrote it.
_BATCH_SCRIPT = """
local function hit(key, ms)
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ms) end
  return n
end
local out = {}
local i = 1
while i <= #KEYS do
  local op, a, b = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local stop = false
  if op == 'a' then
    out[#out + 1] = redis.call('SET', KEYS[i], a, 'PX', b, 'NX') and 1 or 0
  elseif op == 'g' then
    local value = redis.call('GET', KEYS[i])
    out[#out + 1] = value
    stop = value and a ~= '' and (tonumber(value) or 0) >= tonumber(a)
  elseif op == 't' then
    out[#out + 1] = redis.call('GETDEL', KEYS[i])
  else
    local n = hit(KEYS[i], a)
    out[#out + 1] = n
    stop = b ~= '' and n > tonumber(b)
    if ARGV[3 * i + 1] == 'o' then
      i = i + 1
      if stop then
        n = hit(KEYS[i], ARGV[3 * i - 1])
        out[#out + 1] = n
        stop = n > tonumber(ARGV[3 * i])
      end
    end
  end
  if stop then return out end
  i = i + 1
end
return out
"""
_BATCH_SHA: Final = hashlib.sha1(_BATCH_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisStore(Store):
    """:class:`Store` on a Redis server, over connections of the store's own.

    ``url`` is read by ``redis.asyncio.BlockingConnectionPool.from_url``; its query may
    override the defaults below: at most 100 connections, a command waits up to 2 s for
    a free one (bursts queue instead of failing), 2 s socket timeouts, a health check on
    connections idle for 15 s. A command that fails on a broken connection is retried
    once on a fresh one; a timed-out command is not, since it may have run.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        self._prefix = prefix
        self._closed = False
        try:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=100,
                timeout=2.0,
                socket_timeout=2.0,
                socket_connect_timeout=2.0,
                health_check_interval=15,
                retry=Retry(
                    ExponentialBackoff(cap=0.2, base=0.02),
                    retries=1,
                    supported_errors=(RedisConnectionError,),
                ),
                decode_responses=False,
            )
        except (ValueError, TypeError):
            raise ConfigurationError("invalid_setting", "the Redis store URL is invalid") from None
        self._connections = Connections(pool)

    @property
    def prefix(self) -> str:
        """Prepended to every key this store writes."""
        return self._prefix

    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        return bool((await self.batch([Add(kind, key, value, ttl)])).values[0])

    async def get(self, kind: Kind, key: str) -> bytes | None:
        return (await self.batch([Get(kind, key)])).bytes_at(0)

    async def take(self, kind: Kind, key: str) -> bytes | None:
        return (await self.batch([Take(kind, key)])).bytes_at(0)

    async def hit(self, kind: Kind, key: str, window: float) -> int:
        return (await self.batch([Hit(kind, key, window)])).count_at(0)

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        """The whole batch in one Lua script: one round trip, atomic on the server."""
        check_ops(ops)
        self._check_open()
        if not ops:
            return Outcome(())
        keys: list[str] = []
        args: list[bytes | str | int] = []
        for op in ops:
            self._encode(op, keys, args)
        flat = await self._call(self._run_script(keys, args))
        return outcome_of(ops, [_bytes(v) if not isinstance(v, int) else v for v in flat])

    def _encode(self, op: Op, keys: list[str], args: list[bytes | str | int]) -> None:
        keys.append(self._key(op.kind, op.key))
        if isinstance(op, Add):
            args += ["a", op.value, _ms(op.ttl)]
        elif isinstance(op, Get):
            args += ["g", "" if op.below is None else op.below, ""]
        elif isinstance(op, Take):
            args += ["t", "", ""]
        else:
            args += ["h", _ms(op.window), "" if op.limit is None else op.limit]
            if op.over is not None:
                keys.append(self._key(op.over.kind, op.over.key))
                args += ["o", _ms(op.over.window), op.over.limit or 0]  # checked: never None

    async def _run_script(self, keys: list[str], args: list[bytes | str | int]) -> Any:
        execute = self._connections.execute
        try:
            return await execute("EVALSHA", _BATCH_SHA, len(keys), *keys, *args)
        except NoScriptError:  # not cached yet, or no more since a restart or SCRIPT FLUSH
            return await execute("EVAL", _BATCH_SCRIPT, len(keys), *keys, *args)

    async def count(self, kind: Kind) -> int:
        """Live keys of ``kind``, found with SCAN (``SCAN_COUNT`` keys per round trip).

        SCAN may report a key twice while Redis rehashes, hence the set.
        """
        self._check_open()
        pattern = f"{self._prefix}{kind.value}:*"
        seen: set[bytes] = set()
        cursor = 0
        while True:
            command = ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            reply = await self._call(self._connections.execute(*command))
            cursor = int(reply[0])
            seen.update(reply[1])
            if not cursor:
                return len(seen)

    async def ping(self) -> None:
        self._check_open()
        await self._call(self._connections.execute("PING"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RedisError, OSError):  # dropping the connections either way
            await self._connections.close()

    def _key(self, kind: Kind, key: str) -> str:
        return f"{self._prefix}{kind.value}:{key}"

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("store_unavailable", "the store is closed")

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            return await command
        except (RedisError, OSError) as exc:
            raise Unavailable("store_unavailable", "the Redis store failed") from exc


def _ms(seconds: float) -> int:
    """Milliseconds, rounded up so an entry never expires before it was asked to."""
    return max(1, math.ceil(seconds * 1000))


def _bytes(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None
