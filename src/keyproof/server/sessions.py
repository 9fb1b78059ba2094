"""Sessions: rotating refresh tokens bound to a DPoP key (specs/protocol.md "Refresh tokens").

A DPoP-bound sign-in starts a session; its refresh token is opaque (32 random bytes,
unpadded base64url) and the store keeps only its SHA-256:

    Kind.REFRESH          sha256(token) -> the session record (JSON); TTL = the idle
                          timeout, or the session's remaining time if shorter (plus
                          ``EXPIRED_NOTICE``, to name the reason of a late refresh)
    Kind.REFRESH_USED     sha256(token) -> "sid expires_at": a used token's tombstone,
                          kept until the session's absolute end
    Kind.SESSION_REVOKED  sid -> "1", kept until the session's absolute end

Rotation writes the tombstone first and then takes the record, so that of concurrent
refreshes exactly one takes it and every other one finds the tombstone: a used token
that comes back means two parties hold it, and the whole session ends (RFC 9700 §4.14.2).
The order of the checks around these steps lives in :class:`keyproof.server.service.Service`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from keyproof._time import Clock
from keyproof.errors import RefreshRejected
from keyproof.server._records import decode_fields, encode_fields
from keyproof.stores.base import Kind, Store
from keyproof.stores.ops import Add, Get, Take

__all__ = ["EXPIRED_NOTICE", "REFRESH_TOKEN_PATTERN", "SessionRecord", "Sessions"]

REFRESH_TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
"""32 random bytes in unpadded base64url."""
EXPIRED_NOTICE: Final = 300
"""Seconds a record outlives its session's absolute end, so that a late refresh is told
``session_expired`` rather than ``refresh_token_invalid``."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a live refresh token stands for."""

    sid: str
    sub: str
    client_id: str
    audience: str
    scopes: tuple[str, ...]
    """The scopes granted at sign-in: a refresh may narrow them, never widen."""
    jkt: str
    """The DPoP key every refresh must prove possession of."""
    started_at: int
    expires_at: int
    """The absolute end: no refresh after it, whatever the idle timeout."""

    def encode(self) -> bytes:
        return encode_fields(self)

    @classmethod
    def decode(cls, data: bytes) -> SessionRecord:
        return cls(**decode_fields(data))


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode("ascii")).hexdigest()


class Sessions:
    """Refresh tokens and session revocation over one store shared by every replica."""

    def __init__(self, store: Store, *, ttl: int, idle_ttl: int, clock: Clock = time.time) -> None:
        self._store = store
        self._ttl = ttl
        self._idle_ttl = idle_ttl
        self._clock = clock

    async def start(
        self, *, sub: str, audience: str, scopes: tuple[str, ...], jkt: str
    ) -> tuple[SessionRecord, str]:
        """A new session for a DPoP-bound sign-in, and its first refresh token."""
        now = int(self._clock())
        record = SessionRecord(
            sid=secrets.token_urlsafe(16),
            sub=sub,
            client_id=sub,
            audience=audience,
            scopes=scopes,
            jkt=jkt,
            started_at=now,
            expires_at=now + self._ttl,
        )
        return record, await self.issue(record)

    async def issue(self, record: SessionRecord) -> str:
        """Store a fresh refresh token for ``record``, live for the idle timeout."""
        token = secrets.token_urlsafe(32)
        remaining = self._remaining(record.expires_at)
        ttl = self._idle_ttl if self._idle_ttl < remaining else remaining + EXPIRED_NOTICE
        await self._store.add(Kind.REFRESH, _digest(token), record.encode(), ttl)
        return token

    async def lookup(self, refresh_token: str) -> SessionRecord:
        """The live record of ``refresh_token`` (read only), else refuse.

        A token that was already used ends its session (``refresh_token_reused``).
        """
        if REFRESH_TOKEN_PATTERN.fullmatch(refresh_token) is None:
            raise RefreshRejected("refresh_token_invalid", "malformed refresh token")
        data = await self._store.get(Kind.REFRESH, _digest(refresh_token))
        if data is None:
            raise await self._unknown(refresh_token)
        return SessionRecord.decode(data)

    async def _unknown(self, refresh_token: str) -> RefreshRejected:
        if not await self._revoke_rotated(_digest(refresh_token)):
            return RefreshRejected("refresh_token_invalid", "unknown or expired refresh token")
        return RefreshRejected(
            "refresh_token_reused", "this refresh token was already used: the session ended"
        )

    async def check_live(self, record: SessionRecord) -> None:
        """Refuse a session that was revoked or is past its absolute end."""
        if await self.is_revoked(record.sid):
            raise RefreshRejected("session_revoked", "the session was revoked")
        if self._clock() >= record.expires_at:
            raise RefreshRejected("session_expired", "the session is over: sign in again")

    async def rotate(self, refresh_token: str, record: SessionRecord) -> str:
        """Retire ``refresh_token`` and return its successor; exactly one concurrent caller
        wins, every other one finds the tombstone and ends the session."""
        key = _digest(refresh_token)
        tombstone = f"{record.sid} {record.expires_at}".encode()
        ttl = self._remaining(record.expires_at)
        outcome = await self._store.batch(
            [Add(Kind.REFRESH_USED, key, tombstone, ttl), Take(Kind.REFRESH, key)]
        )
        if outcome.bytes_at(1) is None:
            raise await self._unknown(refresh_token)
        return await self.issue(record)

    async def revoke(self, sid: str, expires_at: int) -> None:
        """End session ``sid`` on every replica sharing the store."""
        await self._store.add(Kind.SESSION_REVOKED, sid, b"1", self._remaining(expires_at))

    async def revoke_token(self, refresh_token: str) -> bool:
        """End the session of ``refresh_token``, live or already rotated; False if it is
        neither. A rotated one counts: a client whose token another tab or task rotated
        still logs out, and presenting it to refresh would end the session anyway."""
        if REFRESH_TOKEN_PATTERN.fullmatch(refresh_token) is None:
            return False
        key = _digest(refresh_token)
        data = await self._store.take(Kind.REFRESH, key)
        if data is not None:
            record = SessionRecord.decode(data)
            await self.revoke(record.sid, record.expires_at)
            return True
        return await self._revoke_rotated(key)

    async def _revoke_rotated(self, key: str) -> bool:
        """End the session of the rotated refresh token whose digest is ``key``; False if
        no tombstone names it."""
        tombstone = await self._store.get(Kind.REFRESH_USED, key)
        if tombstone is None:
            return False
        sid, expires_at = tombstone.decode().split(" ")
        await self.revoke(sid, int(expires_at))
        return True

    async def is_revoked(self, sid: str) -> bool:
        mark = self.revoked_mark(sid)
        return await self._store.get(mark.kind, mark.key) is not None

    @staticmethod
    def revoked_mark(sid: str) -> Get:
        """The read :meth:`is_revoked` makes, for a caller's own batch."""
        return Get(Kind.SESSION_REVOKED, sid)

    def _remaining(self, expires_at: int) -> int:
        # At least one second: a store refuses a TTL of zero.
        return max(1, expires_at - int(self._clock()))
