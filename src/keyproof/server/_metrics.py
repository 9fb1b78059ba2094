"""Prometheus metrics for one app: request counts, refusal codes, latency, chain calls.

Every app owns a ``CollectorRegistry``, so several apps in one process (tests,
embedding) never share counters. The ``endpoint`` label is one of the app's route
paths or ``other``, never a raw path, so a scanner cannot grow the label set; the
``chain`` label of the RPC metrics is one of the configured ``rpc_urls`` chains.

Several uvicorn workers (``--workers N``) are several processes, each with its own
counters; a scrape of ``/metrics`` reaches one of them. Run one worker per replica
and scrape each replica, or sum over replicas in the query; counts from one worker
are exact for that worker. With ``metrics_port`` set, the metrics are served on that
port only (see :meth:`Metrics.listener`), never on the public one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest, start_http_server
from starlette.types import Scope

__all__ = ["ERROR_CODE_SCOPE_KEY", "Metrics"]

ERROR_CODE_SCOPE_KEY = "keyproof.error_code"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RPC_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The collectors of one app, in their own registry."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self.endpoints = frozenset(endpoints)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "keyproof_http_requests",
            "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "keyproof_refusals",
            "Requests refused, by endpoint and keyproof error code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.store_failures = Counter(
            "keyproof_store_failures",
            "Store calls that failed (the request answered 503), by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.store_up = Gauge(
            "keyproof_store_up",
            "1 while the store answers, 0 during an outage.",
            registry=self.registry,
        )
        self.store_up.set(1)
        self.latency = Histogram(
            "keyproof_http_request_duration_seconds",
            "Time from request to the end of the response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rpc_calls = Counter(
            "keyproof_rpc_calls",
            "eth_call requests to a chain's node (contract-wallet signatures), by chain.",
            ["chain"],
            registry=self.registry,
        )
        self.rpc_failures = Counter(
            "keyproof_rpc_failures",
            "eth_call requests that got no usable answer, by chain and reason.",
            ["chain", "reason"],
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "keyproof_rpc_call_duration_seconds",
            "Time of one eth_call request, answered or not, by chain.",
            ["chain"],
            buckets=RPC_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Children by label values; the label sets are bounded (see the module doc).
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"

    def observe(
        self, path: str, method: str, status: int, code: str | None, seconds: float
    ) -> None:
        endpoint = self.endpoint(path)
        # labels() validates and locks on every call: each child is looked up once.
        counted = self._requests.get((endpoint, method, status))
        if counted is None:
            counted = self.requests.labels(endpoint, method, str(status))
            self._requests[endpoint, method, status] = counted
        counted.inc()
        timed = self._latency.get(endpoint)
        if timed is None:
            timed = self._latency[endpoint] = self.latency.labels(endpoint)
        timed.observe(seconds)
        if code is not None:
            self.refusals.labels(endpoint, code).inc()

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one finished HTTP request; its refusal code is ``scope[ERROR_CODE_SCOPE_KEY]``,
        where the app's error handler leaves it."""
        code = scope.get(ERROR_CODE_SCOPE_KEY)
        method = _method(scope)
        self.observe(
            str(scope.get("path", "")),
            method,
            status,
            code if isinstance(code, str) else None,
            seconds,
        )

    def observe_rpc(self, chain: str, seconds: float, failure: str | None) -> None:
        """Count one ``eth_call`` (a :data:`keyproof.chain.RpcObserver`)."""
        self.rpc_calls.labels(chain).inc()
        self.rpc_latency.labels(chain).observe(seconds)
        if failure is not None:
            self.rpc_failures.labels(chain, failure).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @contextlib.contextmanager
    def listener(self, host: str, port: int) -> Iterator[None]:
        """Serve these metrics on their own ``host:port`` (``metrics_port``) while open.

        prometheus-client's server runs in a thread of this process and answers every
        path with the exposition text.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _method(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in {"GET", "POST", "HEAD", "OPTIONS"} else "other"
