"""Structured JSON logs with a request id on every line.

:class:`RequestIdMiddleware` gives each HTTP request an id (the caller's
``X-Request-ID`` when it is a short token of safe characters, else a fresh one),
returns it in the ``X-Request-ID`` response header, makes it visible to every log
line and audit entry written while the request runs, and writes one access line and
one metrics observation per request. The access line names the route, never the raw
URL: a query string or an unknown path may carry a token that a client misplaced, so
neither is logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyproof.errors import KeyproofError

if TYPE_CHECKING:  # prometheus-client is the server extra's; the CLI imports this module
    from keyproof.server._metrics import Metrics

__all__ = [
    "JsonFormatter",
    "RequestIdMiddleware",
    "current_request_id",
    "describe_cause",
    "uvicorn_log_config",
]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_request_id: ContextVar[str | None] = ContextVar("keyproof_request_id", default=None)
_access = logging.getLogger("keyproof.access")


def current_request_id() -> str | None:
    """The id of the HTTP request being served, or None outside a request."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, request id, extras.

    Extra fields are passed as ``logger.info("...", extra={"fields": {...}})``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
        return json.dumps(entry, separators=(",", ":"), default=str)


class RequestIdMiddleware:
    """Pure ASGI: request id in context and response header, one access log line, and
    the request counted in the app's :class:`~keyproof.server._metrics.Metrics`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        client_ip: Callable[[Scope], str] | None = None,
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._client_ip = client_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            self._log_access(scope, status, seconds)
            self._metrics.observe_request(scope, status, seconds)
            _request_id.reset(token)

    def _log_access(self, scope: Scope, status: int, seconds: float) -> None:
        fields = {
            "request_id": _request_id.get(),
            "method": scope.get("method"),
            "path": self._metrics.endpoint(str(scope.get("path"))),
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if self._client_ip is not None:
            fields["client_ip"] = self._client_ip(scope)
        _access.info("request", extra={"fields": fields})


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

    uvicorn's own access log is replaced by :class:`RequestIdMiddleware`'s, which
    leaves out query strings.
    """
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
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
