"""The broker's operational surface: /metrics, /health, /ready, store timings, what it logs at start and stop.

    metropole_store_operations_total{operation, outcome}     store calls (get, query, upsert_replace, ...)
    metropole_store_operation_duration_seconds{operation}     their latency
    metropole_notification_queue_length                       notifications waiting for delivery
    metropole_history_lag_records                             change-log records the history recorder has not written yet
    metropole_http_requests_total, ..._duration_seconds       (web/metrics.py)

Store calls are timed by wrapping the store instance's coroutine methods
(the class is left alone, so `isinstance` checks keep working). The gauges
are read from the database when Prometheus scrapes, not kept up to date on
every write. `instrument(app, settings)` wires it all onto the broker app;
readiness asks the store, the subscription storage and history.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

from broker.state import BrokerState, opened
from web.health import Check

log = logging.getLogger("broker")

STORE_OPS = Counter("metropole_store_operations", "Entity store calls", ["operation", "outcome"])
STORE_LATENCY = Histogram("metropole_store_operation_duration_seconds", "Entity store call latency", ["operation"],
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0))
QUEUE = Gauge("metropole_notification_queue_length", "Notifications queued for delivery (all subscriptions)")
HISTORY_LAG = Gauge("metropole_history_lag_records", "Change-log records not yet written to history")
TIMED = ("get", "get_many", "insert", "upsert_replace", "modify", "delete", "query", "type_summaries",
         "changes_after", "trim_changes")


def _timed(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    ok, failed = STORE_OPS.labels(name, "ok"), STORE_OPS.labels(name, "error")
    latency = STORE_LATENCY.labels(name)

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await method(*args, **kwargs)
        except BaseException:
            failed.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)
        ok.inc()
        return result

    return call


_INSTRUMENTED: weakref.WeakSet[Callable[..., Awaitable[Any]]] = weakref.WeakSet()
"""The timing wrappers made by instrument_store: a store instrumented twice is timed once."""


def instrument_store(store: Any) -> None:
    """Time the store's calls (instance attributes shadow the class's methods)."""
    for name in TIMED:
        method = getattr(store, name, None)
        if method is not None and method not in _INSTRUMENTED:
            wrapped = _timed(name, method)
            _INSTRUMENTED.add(wrapped)
            setattr(store, name, wrapped)


async def refresh_gauges(state: BrokerState | None) -> None:
    """Read the notification queue length and the history lag (at scrape time; nothing before the broker opened)."""
    if state is not None:
        QUEUE.set(await state.subscriptions.storage.queue_size())
        HISTORY_LAG.set(max(0, await state.store.last_change_seq() - int(state.recorder.cursor)))


def readiness_checks(app: Any) -> dict[str, Check]:
    """The parts a broker needs to serve: the store, the subscription storage, history."""

    async def store() -> str | None:
        if (state := opened(app)) is None:
            return "not open yet"
        await state.store.has_tenant("")
        return None

    async def subscriptions() -> str | None:
        if (state := opened(app)) is None:
            return "not started yet"
        await state.subscriptions.storage.queue_size()
        return None

    async def history() -> str | None:
        if (state := opened(app)) is None:
            return "not started yet"
        task = getattr(state.recorder, "_task", None)
        return "the history recorder stopped" if task is not None and task.done() else None

    return {"store": store, "subscriptions": subscriptions, "history": history}


async def metrics(request: Request) -> Response:
    """GET /metrics: the Prometheus text exposition."""
    from web.metrics import CONTENT_TYPE, exposition

    try:
        await refresh_gauges(opened(request.app))
    except Exception:  # a scrape during an outage still gets the counters
        log.warning("could not read the notification queue or history lag for /metrics", exc_info=True)
    return Response(exposition(), media_type=CONTENT_TYPE)


def wire(app: Any, authenticator: Any = None) -> None:
    """Put the operational middlewares and /metrics on the broker app (outermost last)."""
    from web.access_log import AccessLog
    from web.auth import Authenticate, Authenticator
    from web.auth.middleware import problem_json
    from web.auth.policy import BROKER
    from web.health import Health
    from web.metrics import HttpMetrics
    from web.tenants import TenantNames

    authenticator = authenticator if authenticator is not None else Authenticator.from_env()
    app.state.authenticator = authenticator
    app.add_middleware(TenantNames, render=bad_request_data)
    app.add_middleware(Authenticate, authenticator=authenticator, policy=BROKER, render=problem_json)
    app.add_middleware(Health, checks=lambda: readiness_checks(app))
    app.add_middleware(HttpMetrics, server="broker")
    app.add_middleware(AccessLog)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def operations(state: Any) -> dict[str, object]:
    """The operational features switched on (for /version): authentication, TLS, metrics, access log."""
    from web.access_log import enabled_from_env
    from web.tls import ServerTls

    authenticator = getattr(state, "authenticator", None)
    methods = authenticator.methods if authenticator is not None and authenticator.enabled else []
    try:
        tls = ServerTls.from_env().enabled
    except ValueError:
        tls = False
    return {"auth": methods or "off", "tls": tls, "metrics": "/metrics", "accessLog": enabled_from_env(),
            "health": "/health", "readiness": "/ready"}


def bad_request_data(status: int, title: str, detail: str) -> tuple[bytes, str]:
    """A BadRequestData ProblemDetails (clause 5.5.2) for input refused before the handlers."""
    import orjson

    from models.errors import BadRequestData

    return orjson.dumps(BadRequestData(detail).to_problem()), "application/json"
