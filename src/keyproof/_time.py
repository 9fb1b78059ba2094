"""Time as keyproof reads it: an injectable clock and the one validity-window rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from keyproof.errors import OutsideValidity

__all__ = ["Clock", "check_window", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``; tests pass a frozen one."""


def check_window(now: float, *, expires_at: float | None, not_before: float | None) -> None:
    """Valid in ``[not_before, expires_at)`` (specs/protocol.md §1.1); else ``OutsideValidity``."""
    if expires_at is not None and now >= expires_at:
        raise OutsideValidity("message_expired", "the message has expired")
    if not_before is not None and now < not_before:
        raise OutsideValidity("message_not_yet_valid", "the message is not yet valid")


def rfc3339(timestamp: int) -> str:
    """Whole-second UTC time as RFC 3339 ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
