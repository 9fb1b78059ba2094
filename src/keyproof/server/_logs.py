"""Structured JSON logs with a request id on every line.

:class:`~keyproof.server._edge.EdgeMiddleware` gives each HTTP request an id (the caller's
``X-Request-ID`` when it is a short token of safe characters, else a fresh one),
returns it in the ``X-Request-ID`` response header, makes it visible to every log
line and audit entry written while the request runs, and writes one access line and
one metrics observation per request. The access line names the route, never the raw
URL: a query string or an unknown path may carry a token that a client misplaced, so
neither is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from contextvars import ContextVar
from typing import Any, TextIO

from starlette.types import Scope

from keyproof._time import log_time
from keyproof.errors import KeyproofError

__all__ = [
    "REQUEST_ID",
    "BatchingStreamHandler",
    "JsonFormatter",
    "current_request_id",
    "describe_cause",
    "log_access",
    "new_request_id",
    "uvicorn_log_config",
]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID: ContextVar[str | None] = ContextVar("keyproof_request_id", default=None)
_access = logging.getLogger("keyproof.access")
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
# A request id correlates log lines; it is no secret (a caller may choose its own), so it
# needs no system call per request. Seeded per process, and again in a forked worker.
_ids = random.Random()  # noqa: S311
os.register_at_fork(after_in_child=_ids.seed)


def current_request_id() -> str | None:
    """The id of the HTTP request being served, or None outside a request."""
    return REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, request id, extras.

    Extra fields are passed as ``logger.info("...", extra={"fields": {...}})``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": log_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker, when several share a port
            "message": record.getMessage(),
            "request_id": current_request_id(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry or k == "request_id"})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` that writes the access lines of one event-loop iteration together.

    On a thread running an event loop, an access line waits for the end of the current
    loop iteration, when every access line the iteration logged is written and flushed
    at once: one system call per iteration instead of one per request. Every other line
    is written at once, after the waiting ones, so the order is kept; so is uvicorn's
    last line on shutdown, which matters as uvicorn may end the process by re-raising
    the signal it caught, and no exit handler runs then. ``flush`` and ``close`` (also
    at interpreter exit) write what waits.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # the logging contract: report, never raise
            self.handleError(record)
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        batched = loop is not None and record.name == _access.name
        if batched and loop is not None and not self._waiting:
            loop.call_soon(self.flush)
        self._waiting.append(line)
        if not batched:
            self._write_waiting()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_waiting()
        finally:
            self.release()
        super().flush()

    def _write_waiting(self) -> None:
        if not self._waiting:
            return
        text = "".join(self._waiting)
        self._waiting.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "log lines lost"}))


def new_request_id(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a short token of safe characters, else a
    fresh random one."""
    return _incoming_id(scope) or f"{_ids.getrandbits(128):032x}"


def log_access(fields: dict[str, Any]) -> None:
    """Write the access line of one request, with its ``fields``; the caller has checked
    :func:`access_log_enabled`.

    The record is made and handed to the handlers directly: the call site is always
    this function, and looking it up on the stack for every request costs more than
    the rest of the line.
    """
    record = _access.makeRecord(
        _access.name, logging.INFO, __file__, 0, "request", (), None, extra={"fields": fields}
    )
    _access.handle(record)


def access_log_enabled() -> bool:
    """Whether :func:`log_access` writes anything: its caller skips building the fields."""
    return _access.isEnabledFor(logging.INFO)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SAFE_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return None


def describe_cause(error: KeyproofError) -> str:
    """What lies under ``error``, on one line: ``Type: message`` of its cause, if any.

    For store and upstream failures, whose public description stays generic while the
    operator needs the backend's own words (refused, timed out, locked).
    """
    cause = error.__cause__
    if cause is None:
        return error.description
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` for ``keyproof serve``: JSON lines on stderr.

    uvicorn's own access log is replaced by :func:`log_access`'s, which
    leaves out query strings.
    """
    handler = {
        "class": f"{__name__}.BatchingStreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "keyproof": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
