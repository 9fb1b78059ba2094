"""A bounded Python load driver for what ``wrk`` cannot do: logins with a new key each.

A login is two requests on one keep-alive connection: ``POST /v1/challenge`` for a
fresh did:key (ed25519) account, then ``POST /v1/token`` with the message signed by
that key. wrk's Lua cannot sign, and a challenge is single-use and bound to its nonce,
so they cannot be pre-signed either. The same driver, with the same key generation and
signing, sends the same two bodies to the echo app: that pair rate is the baseline the
driver's own cost is paid against. The client is a minimal HTTP/1.1 writer and reader
on uvloop (no HTTP library in the loop), so it costs little next to the server.

Closed loop (``rate=None``): every connection sends as soon as its last login ended,
for ``seconds``. Open loop (``rate``): logins are started on a fixed schedule and each
latency counts from its scheduled start, so a stalled server is not hidden by a
client that waits for it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop
from nacl.signing import SigningKey

from keyproof.crypto.didkey import encode_did_key
from keyproof.crypto.encoding import encode_base64url

CHALLENGE_OK, TOKEN_OK = 201, 200


class Connection:
    """One keep-alive HTTP/1.1 connection; bodies must carry a Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Tally:
    logins: list[float] = field(default_factory=list)
    challenges: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    failures: int = 0


def _message(echo: bool, status: int, body: bytes) -> str:
    if echo:
        return "x" * 400  # about a challenge's length
    return str(json.loads(body)["message"]) if status == CHALLENGE_OK else ""


async def _login(conn: Connection, echo: bool, tally: Tally, started: float) -> None:
    key = SigningKey.generate()
    account = encode_did_key("ed25519", bytes(key.verify_key))
    t0 = time.perf_counter()
    status, body = await conn.post(
        "/echo" if echo else "/v1/challenge", json.dumps({"account": account}).encode()
    )
    t1 = time.perf_counter()
    message = _message(echo, status, body)
    signature = encode_base64url(key.sign(message.encode()).signature)
    token_body = json.dumps({"message": message, "signature": signature}).encode()
    t2 = time.perf_counter()
    status2, _ = await conn.post("/echo" if echo else "/v1/token", token_body)
    t3 = time.perf_counter()
    ok = (status, status2) == (200, 200) if echo else (status, status2) == (CHALLENGE_OK, TOKEN_OK)
    if not ok:
        tally.failures += 1
        return
    tally.challenges.append(t1 - t0)
    tally.tokens.append(t3 - t2)
    tally.logins.append(t3 - started)


async def _drive(
    port: int, echo: bool, seconds: float, connections: int, rate: float | None
) -> tuple[Tally, float]:
    tally = Tally()
    conns = [await Connection.open(port) for _ in range(connections)]
    start = time.perf_counter()
    deadline = start + seconds

    async def closed(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            await _login(conn, echo, tally, time.perf_counter())

    async def paced(conn: Connection, index: int) -> None:
        interval = connections / rate if rate else 0.0
        scheduled = start + index * interval / connections
        while scheduled < deadline:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await _login(conn, echo, tally, scheduled)
            scheduled += interval

    try:
        if rate is None:
            await asyncio.gather(*(closed(c) for c in conns))
        else:
            await asyncio.gather(*(paced(c, i) for i, c in enumerate(conns)))
    finally:
        for conn in conns:
            conn.close()
    return tally, time.perf_counter() - start


def _ms(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return round(values[0] * 1000, 3) if values else None
    return round(statistics.quantiles(values, n=100)[q - 1] * 1000, 3)


def drive(
    port: int,
    *,
    echo: bool,
    seconds: float,
    connections: int = 16,
    rate: float | None = None,
) -> dict[str, Any]:
    """Logins (or echo pairs) per second and their latencies, over ``seconds`` (bounded)."""
    # The driver's own full collections (10 to 20 ms over its ~40k objects) would be
    # counted as the server's latency; a bounded run leaves little cyclic garbage.
    gc.collect()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            tally, elapsed = runner.run(
                asyncio.wait_for(_drive(port, echo, seconds, connections, rate), seconds + 30)
            )
    finally:
        gc.enable()
    return {
        "rate": round(len(tally.logins) / elapsed, 1),
        "logins": len(tally.logins),
        "p50_ms": _ms(tally.logins, 50),
        "p99_ms": _ms(tally.logins, 99),
        "first_request_p50_ms": _ms(tally.challenges, 50),
        "first_request_p99_ms": _ms(tally.challenges, 99),
        "second_request_p50_ms": _ms(tally.tokens, 50),
        "second_request_p99_ms": _ms(tally.tokens, 99),
        "failures": tally.failures,
        "connections": connections,
        "target_rate": rate,
    }
