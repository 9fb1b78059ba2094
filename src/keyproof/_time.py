"""Time as keyproof reads it: an injectable clock and the one validity-window rule."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from keyproof.errors import OutsideValidity

__all__ = ["Clock", "check_window", "log_time", "rfc3339"]

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``; tests pass a frozen one."""


def check_window(now: float, *, expires_at: float | None, not_before: float | None) -> None:
    """Valid in ``[not_before, expires_at)`` (specs/protocol.md §1.1); else ``OutsideValidity``."""
    if expires_at is not None and now >= expires_at:
        raise OutsideValidity("message_expired", "the message has expired")
    if not_before is not None and now < not_before:
        raise OutsideValidity("message_not_yet_valid", "the message is not yet valid")


@functools.lru_cache(maxsize=256)  # a challenge's instants repeat within each second
def rfc3339(timestamp: int) -> str:
    """Whole-second UTC time as RFC 3339 ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@functools.lru_cache(maxsize=4)
def _log_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def log_time(timestamp: float) -> str:
    """UTC time with milliseconds, as logs and the audit log write it:
    ``YYYY-MM-DDTHH:MM:SS.mmm+00:00`` (what ``datetime.isoformat`` gives, cheaper)."""
    fraction, whole = math.modf(timestamp)
    second, micros = divmod(round(fraction * 1_000_000), 1_000_000)  # as datetime rounds
    return f"{_log_second(int(whole) + second)}.{micros // 1000:03d}+00:00"
