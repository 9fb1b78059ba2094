"""Batches: the store work of one request step, sent to the backend as one unit.

A batch is a short list of operations that :meth:`Store.batch` runs in order, in one
round trip where the backend allows (one SQLite transaction, one Redis script, one
PostgreSQL function call, one loop in memory). Each operation keeps the meaning of its
single-call counterpart (:meth:`Store.add`, ``get``, ``take``, ``hit``). An operation
with a limit may *refuse*; the batch then stops there: the refusing operation has taken
effect (a counter over its limit stays counted), the ones after it never run.

- :class:`Hit` refuses when the count exceeds ``limit``. With ``over``, exceeding it
  runs that second hit instead, which refuses (or not) in its place: the one
  request a network still gets while a global counter is over its cap.
- :class:`Get` with ``below`` reads a counter and refuses when it is at least ``below``.
- :class:`Add` and :class:`Take` never refuse; their results say what happened.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from keyproof.stores import check_ttl
from keyproof.stores.base import Kind

if TYPE_CHECKING:
    from keyproof.stores.base import Store

__all__ = [
    "Add",
    "Get",
    "Hit",
    "Op",
    "Outcome",
    "Take",
    "Value",
    "check_ops",
    "outcome_of",
    "run_each",
    "run_steps",
]


class Add(NamedTuple):
    """Insert if absent (or expired); the result is True if inserted."""

    kind: Kind
    key: str
    value: bytes
    ttl: float


class Get(NamedTuple):
    """The live value or None; with ``below``, refuse a counter at or past it."""

    kind: Kind
    key: str
    below: int | None = None


class Take(NamedTuple):
    """Atomically return and delete the live value (None if there was none)."""

    kind: Kind
    key: str


class Hit(NamedTuple):
    """Increment a windowed counter; the result is the count after incrementing."""

    kind: Kind
    key: str
    window: float
    limit: int | None = None
    over: Hit | None = None


Op = Add | Get | Take | Hit
Value = bool | bytes | int | None


class Outcome(NamedTuple):
    """The result of each operation that ran, in order, and whether the last refused."""

    values: tuple[Value, ...]
    refused: bool = False

    def bytes_at(self, index: int) -> bytes | None:
        value = self.values[index]
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError(f"operation {index} does not return bytes")

    def count_at(self, index: int) -> int:
        value = self.values[index]
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"operation {index} does not return a count")


def check_ops(ops: Sequence[Op]) -> None:
    """Raise ``ValueError`` for a bad TTL or window anywhere, before anything runs."""
    for op in ops:
        if isinstance(op, Add):
            check_ttl(op.ttl)
        elif isinstance(op, Hit):
            check_ttl(op.window, "window")
            if op.over is not None:
                if op.limit is None or op.over.limit is None or op.over.over is not None:
                    raise ValueError("over and its hit need limits; over takes no over")
                check_ttl(op.over.window, "window")


def over_limit(op: Hit, count: int) -> bool:
    return op.limit is not None and count > op.limit


def counter_value(value: bytes) -> int:
    """A counter's stored value as an int; anything else counts as 0."""
    try:
        return int(value)
    except ValueError:
        return 0


def get_refuses(op: Get, value: bytes | None) -> bool:
    return op.below is not None and value is not None and counter_value(value) >= op.below


def outcome_of(ops: Sequence[Op], flat: Sequence[Value]) -> Outcome:
    """Rebuild an :class:`Outcome` from the flat results a backend script returns.

    ``flat`` holds one value per operation that ran, plus, right after a :class:`Hit`
    whose ``over`` ran, that second count.
    """
    values: list[Value] = []
    position = 0
    for op in ops:
        if position >= len(flat):
            break
        value = flat[position]
        position += 1
        values.append(value)
        refused = False
        if isinstance(op, Hit):
            count = int(value)  # type: ignore[arg-type]
            values[-1] = count
            if over_limit(op, count):
                refused = True
                if op.over is not None:
                    refused = over_limit(op.over, int(flat[position]))  # type: ignore[arg-type]
                    position += 1
        elif isinstance(op, Get):
            refused = get_refuses(op, value)  # type: ignore[arg-type]
        elif isinstance(op, Add):
            values[-1] = bool(value)
        if refused:
            return Outcome(tuple(values), refused=True)
    return Outcome(tuple(values))


async def run_each(store: Store, ops: Sequence[Op]) -> Outcome:
    """A batch as one call per operation: the meaning of a batch, without its one hop."""
    check_ops(ops)
    plan = _plan(ops)
    try:
        op = next(plan)
        while True:
            op = plan.send(await _call(store, op))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Steps(Protocol):
    """The single operations of a backend, run synchronously inside one unit of work."""

    def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool: ...
    def get(self, kind: Kind, key: str) -> bytes | None: ...
    def take(self, kind: Kind, key: str) -> bytes | None: ...
    def hit(self, kind: Kind, key: str, window: float) -> int: ...


def run_steps(steps: Steps, ops: Sequence[Op]) -> Outcome:
    """A batch over synchronous steps (a transaction, or one turn of the event loop)."""
    plan = _plan(ops)
    try:
        op = next(plan)
        while True:
            op = plan.send(_call(steps, op))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _call(target: Steps | Store, op: Op) -> Any:
    """``target``'s call for ``op``: a value from steps, an awaitable from a store."""
    if isinstance(op, Add):
        return target.add(op.kind, op.key, op.value, op.ttl)
    if isinstance(op, Take):
        return target.take(op.kind, op.key)
    if isinstance(op, Get):
        return target.get(op.kind, op.key)
    return target.hit(op.kind, op.key, op.window)


def _plan(ops: Sequence[Op]) -> Generator[Op, Value, Outcome]:
    """The order of a batch and where it stops, for a driver that runs each operation
    it is given and sends back the result; the ``over`` of a refusing hit is given too."""
    values: list[Value] = []
    for op in ops:
        value = yield op
        values.append(value)
        refused = False
        if isinstance(op, Get):
            refused = get_refuses(op, value)  # type: ignore[arg-type]
        elif isinstance(op, Hit):
            refused = over_limit(op, value)  # type: ignore[arg-type]
            if refused and op.over is not None:
                refused = over_limit(op.over, (yield op.over))  # type: ignore[arg-type]
        if refused:
            return Outcome(tuple(values), refused=True)
    return Outcome(tuple(values))
