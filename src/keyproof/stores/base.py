"""The store interface: a handful of atomic operations every backend provides.

keyproof keeps short-lived state of a few kinds (specs/protocol.md §8): outstanding
challenges, revoked token ids, used signed-action ids, rate-limit counters, used DPoP
proof ids, and sessions (refresh tokens, their tombstones, revoked sessions). Every entry has a
time to live; nothing is kept forever. Each operation is one atomic step on the
backend, so several processes or replicas sharing a store keep the guarantees of one.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyproof.stores.ops import Op, Outcome

__all__ = ["Kind", "Store"]


class Kind(StrEnum):
    """Namespaces of the store; keys of different kinds never collide."""

    CHALLENGE = "challenge"
    USED_NONCE = "used_nonce"
    REVOKED = "revoked"
    ACTION = "action"
    COUNTER = "counter"
    DPOP_PROOF = "dpop_proof"
    REFRESH = "refresh"
    REFRESH_USED = "refresh_used"
    SESSION_REVOKED = "session_revoked"


class Store(abc.ABC):
    """Async key/value store with TTLs and atomic insert-if-absent and take.

    Keys are short strings chosen by keyproof; values are opaque bytes. ``ttl`` and
    ``window`` are in seconds and must be positive and finite: they come from keyproof
    itself, so a bad one raises ``ValueError`` (a programming error, not a client one).
    An entry is live while ``now < written_at + ttl``. Backends raise
    ``keyproof.errors.Unavailable`` when they cannot reach their storage, and after
    :meth:`close`; never anything else for an I/O failure.

    A key used with :meth:`hit` should not also be written with :meth:`add`; a
    counter reads back through :meth:`get` and :meth:`take` as ASCII decimal bytes.
    """

    async def open(self) -> None:  # noqa: B027 -- optional: most backends need nothing
        """Prepare the backend before the first request (connect, migrate its schema).

        Optional: every operation prepares the backend on first use too. Raises
        ``Unavailable`` if it cannot be reached, ``ConfigurationError`` if it can never
        be used by this version. Idempotent.
        """

    async def migrate(self) -> tuple[int, int] | None:
        """Apply the schema's forward migrations now; its version before and after.

        None for a backend without a versioned schema (it is only opened).
        """
        await self.open()
        return None

    @abc.abstractmethod
    async def add(self, kind: Kind, key: str, value: bytes, ttl: float) -> bool:
        """Insert if absent (or expired). True if inserted, False if a live entry exists."""

    @abc.abstractmethod
    async def get(self, kind: Kind, key: str) -> bytes | None:
        """The live value, or None. Never modifies anything."""

    @abc.abstractmethod
    async def take(self, kind: Kind, key: str) -> bytes | None:
        """Atomically return and delete the live value; exactly one concurrent caller wins."""

    @abc.abstractmethod
    async def hit(self, kind: Kind, key: str, window: float) -> int:
        """Increment a counter that expires ``window`` seconds after its first hit.

        Returns the count after incrementing (1 for the first hit in a window).
        """

    async def batch(self, ops: Sequence[Op]) -> Outcome:
        """Run ``ops`` in order; stop after the first that refuses (:mod:`.ops`).

        Backends run a batch in one round trip, as one transaction where they have
        them. This default makes one call per operation: each stays atomic, and callers
        rely on nothing more than order and the stop at a refusal. A bad TTL or window
        raises ``ValueError`` before anything runs.
        """
        from keyproof.stores.ops import run_each

        return await run_each(self, ops)

    @abc.abstractmethod
    async def count(self, kind: Kind) -> int:
        """Number of live entries of ``kind`` (bounded-size checks and tests).

        May walk every entry of ``kind``; not for a request's hot path.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``Unavailable`` if the backend cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; idempotent. Every later call raises ``Unavailable``."""
