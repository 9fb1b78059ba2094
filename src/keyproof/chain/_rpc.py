"""A small async JSON-RPC 2.0 client that knows one method, ``eth_call``.

Bounded in everything a node controls: the whole exchange (connect, send, wait, read)
has one deadline, the response body is read only up to a size cap, redirects are not
followed, and the answer must be exactly one 32-byte word. Any other outcome is an
:class:`RpcFailure` with a short reason (for metrics and logs), never the node's own
text: the caller fails closed.

Requests go straight to an httpx transport (a connection pool) rather than through an
``httpx.AsyncClient``, whose INFO log line of every request would print the node's URL,
and RPC URLs usually carry an API key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any, Final

import httpx

__all__ = ["RpcClient", "RpcFailure"]

_WORD_HEX: Final = re.compile(r"0x[0-9a-fA-F]{64}", re.ASCII)


class RpcFailure(Exception):
    """The node did not give a usable answer; ``reason`` is one short label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RpcClient:
    """``eth_call`` over HTTP(S) to any configured node, one connection pool for all."""

    def __init__(
        self,
        *,
        timeout: float,
        max_response_bytes: int,
        max_connections: int,
    ) -> None:
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._limits = httpx.Limits(max_connections=max_connections)
        self._transport: httpx.AsyncHTTPTransport | None = None  # built on first use
        self._ids = itertools.count(1)

    async def eth_call(self, url: str, data: bytes, *, gas: int) -> bytes:
        """Run ``data`` as a call without ``to`` at the latest block; its 32-byte result."""
        request_id = next(self._ids)
        payload = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "eth_call",
            "params": [{"data": "0x" + data.hex(), "gas": hex(gas)}, "latest"],
        }
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._post(url, payload)
        except TimeoutError:
            raise RpcFailure("timeout") from None
        except httpx.HTTPError:
            raise RpcFailure("unreachable") from None
        return _word(body, request_id)

    async def _post(self, url: str, payload: dict[str, Any]) -> bytes:
        timeout = httpx.Timeout(self._timeout).as_dict()
        request = httpx.Request("POST", url, json=payload, extensions={"timeout": timeout})
        if self._transport is None:  # its TLS context costs ~20 ms: only when a node is asked
            self._transport = httpx.AsyncHTTPTransport(limits=self._limits)
        response = await self._transport.handle_async_request(request)
        try:
            if response.status_code != 200:
                raise RpcFailure(f"http_{response.status_code // 100}xx")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self._max_response_bytes:
                    raise RpcFailure("too_large")
        finally:
            await response.aclose()
        return bytes(body)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None


def _word(body: bytes, request_id: int) -> bytes:
    """The ``result`` of a JSON-RPC response to ``request_id``, if it is one word."""
    try:
        message = json.loads(body)
    except ValueError:
        raise RpcFailure("not_json") from None
    if not isinstance(message, dict) or message.get("id") != request_id:
        raise RpcFailure("bad_response")
    if "error" in message:
        raise RpcFailure("rpc_error")
    result = message.get("result")
    if not isinstance(result, str) or _WORD_HEX.fullmatch(result) is None:
        raise RpcFailure("bad_response")
    return bytes.fromhex(result[2:])
