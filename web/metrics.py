"""Prometheus metrics of the HTTP servers (`prometheus_client`): requests by route and status, latencies.

    metropole_http_requests_total{server, method, route, status}
    metropole_http_request_duration_seconds{server, method, route}     histogram

`route` is the route's template (`/ngsi-ld/v1/entities/{entityId}`), never
the raw path, so ids do not explode the series; requests no route took are
`unmatched`. `HttpMetrics` wraps an app; `exposition()` renders the default
registry, which the broker's `/metrics` serves together with its own
gauges (store operations, notification queue, history lag: broker/ops.py).
`bench/ops_bench.py` measures what this costs on the hot paths.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("metropole_http_requests", "HTTP requests answered", ["server", "method", "route", "status"])
LATENCY = Histogram("metropole_http_request_duration_seconds", "Time to answer an HTTP request",
                    ["server", "method", "route"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """The text exposition of every metric of the process."""
    return generate_latest(REGISTRY)


def route_of(scope: Scope) -> str:
    """The template of the route that served the request, with the mount prefix; `unmatched` when none did."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    return str(scope.get("root_path", "")) + template


class HttpMetrics:
    """Counts and times the HTTP requests of the app it wraps, labelled `server`."""

    def __init__(self, app: ASGIApp, *, server: str) -> None:
        self.app = app
        self.server = server
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope["method"], route_of(scope), status[0], time.perf_counter() - started)

    def _record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict build: once per (method, route, status)
            children = (REQUESTS.labels(self.server, method, route, str(status)),
                        LATENCY.labels(self.server, method, route))
            if len(self._children) < 10_000:
                self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)
