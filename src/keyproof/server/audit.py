"""The audit log: one JSON line per login or signed-action decision.

Each line records what an operator needs to investigate abuse and nothing an
attacker could replay: the time, the event, the outcome and its code, the account,
the client IP, the request id and SHA-256 digests of the nonce or token id. Never a
token, a signature, a message or a key.

Lines are appended with a single ``write`` on an ``O_APPEND`` descriptor, so several
worker processes may share one file without interleaving lines. The file is created
with mode 0600 (``<data_dir>/audit.jsonl`` unless ``Settings.audit_log`` names
another path). A failed write is reported in the service log and does not change
the decision already taken.

Log rotation: before a line, at most once per second, the file at ``path`` is compared
(device and inode) with the one open; when logrotate has moved or deleted it, the lines
from then on go to a new file at ``path`` (those of the second before it may still go
to the moved file: nothing is lost). :meth:`AuditLog.reopen` (``keyproof serve`` calls
it on ``SIGHUP``) closes the file at once. ``copytruncate`` is not needed.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Literal

from keyproof._json import dumps_compact
from keyproof._time import Clock, log_time
from keyproof.server._logs import current_request_id
from keyproof.server._ratelimit import digest

__all__ = ["AUDIT_FILE_NAME", "AuditLog", "Outcome"]

AUDIT_FILE_NAME = "audit.jsonl"
ROTATION_CHECK_SECONDS = 1.0
Outcome = Literal["success", "refused"]
_log = logging.getLogger("keyproof.server.audit")


class AuditLog:
    """Appends decisions to ``path`` as JSON lines; the file is opened on first use."""

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self.path = path
        self._clock = clock
        self._fd: int | None = None
        self._opened: tuple[int, int] = (0, 0)
        """(device, inode) of the open file: it cannot change while the file is open."""
        self._lock = threading.Lock()
        self._checked_at = 0.0

    def record(
        self,
        event: str,
        outcome: Outcome,
        *,
        code: str | None,
        account: str | None,
        client_ip: str | None,
        nonce: str | None = None,
        jti: str | None = None,
        action_id: str | None = None,
    ) -> None:
        """Append one decision. ``nonce``, ``jti`` and ``action_id`` only as digests."""
        now = self._clock()
        entry: dict[str, Any] = {
            "time": log_time(now),
            "event": event,
            "outcome": outcome,
            "code": code,
            "account": account,
            "client_ip": client_ip,
            "request_id": current_request_id(),
        }
        if nonce is not None:
            entry["nonce_sha256"] = digest(nonce)
        if jti is not None:
            entry["jti_sha256"] = digest(jti)
        if action_id is not None:
            entry["action_id_sha256"] = digest(action_id)
        self._append(dumps_compact(entry).encode("utf-8") + b"\n")

    def close(self) -> None:
        with self._lock:
            self._close()

    def reopen(self) -> None:
        """Close the file now; the next line opens ``path`` afresh."""
        self.close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, line: bytes) -> None:
        try:
            with self._lock:
                if self._fd is not None and self._rotated():
                    self._close()
                if self._fd is None:
                    self._fd = _open_private(self.path)
                    opened = os.fstat(self._fd)
                    self._opened = (opened.st_dev, opened.st_ino)
                    self._checked_at = self._clock()
                os.write(self._fd, line)
        except OSError as exc:
            _log.error("audit log write failed: %s", type(exc).__name__)

    def _rotated(self) -> bool:
        # A stat per line showed in profiles; rotation is rare and loses nothing if late.
        now = self._clock()
        if 0 <= now - self._checked_at < ROTATION_CHECK_SECONDS:
            return False
        self._checked_at = now
        return _moved(self.path, self._opened)


def _moved(path: Path, opened: tuple[int, int]) -> bool:
    """True when ``path`` no longer names the open file (rotated away or deleted)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return True
    return (named.st_dev, named.st_ino) != opened


def _open_private(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) and mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd
