"""The QuantumLeap-compatible history API (QuantumLeap 1.0.0, /v2) over the broker's temporal history.

    GET    /v2                                     the resource list
    POST   /v2/notify                              NGSI-v2 and NGSI-LD notifications -> history
    POST   /v2/subscribe                           the broker subscription that feeds it
    GET    /v2/entities                            NTNE    every entity with history, its latest time index
    GET    /v2/entities/{id}[/value]               1T1ENA  one entity, several attributes
    DELETE /v2/entities/{id}
    GET    /v2/entities/{id}/attrs/{attr}[/value]  1T1E1A  one entity, one attribute
    GET    /v2/types/{type}[/value]                1TNENA  entities of a type, several attributes
    DELETE /v2/types/{type}
    GET    /v2/types/{type}/attrs/{attr}[/value]   1TNE1A  entities of a type, one attribute
    GET    /v2/attrs[/value]                       NTNENA  every attribute, by type
    GET    /v2/attrs/{attr}[/value]                NTNE1A  every entity with the attribute, by type

`create_quantumleap_app(state)` builds the app; `state` is a callable giving
the broker app's state (broker.state.state_source: history, temporal,
recorder, resolver, subscriptions; None until the broker's lifespan opened it): the broker mounts it at /v2 on its own port, and `metropole
run` serves it on 8668 too, borrowing the same state, so both read and
write the very history storage the NGSI-LD temporal API uses. Handlers live
in routes/, the work in service.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from broker import limits
from broker.quantumleap.errors import QLError
from broker.quantumleap.routes import attrs, entities, meta, notify, subscribe, types
from broker.quantumleap.routes.meta import QL_VERSION
from broker.quantumleap.service import QuantumLeapService, StateSource
from broker.quantumleap.settings import QuantumLeapSettings
from broker.quantumleap.shapes import json_response
from models.errors import NgsiLdError
from web.fastroutes import FastRoutes, plan
from web.request_limits import RequestLimits
from web.resources import ResourcePaths
from web.secrets import scrub

log = logging.getLogger("broker.quantumleap")

__all__ = ["QL_VERSION", "create_quantumleap_app", "exception_handlers"]


def _operations(app: FastAPI, state: StateSource, authenticator: Any) -> None:
    """Authentication (history policy), /ready, HTTP metrics and the access log (web/)."""
    from web.access_log import AccessLog
    from web.auth import Authenticate, Authenticator, plain_json
    from web.auth.policy import HISTORY
    from web.health import Health
    from web.metrics import HttpMetrics

    async def history() -> str | None:
        broker = state()
        if broker is None:
            return "the broker's history is not open yet"
        await broker.store.has_tenant("")
        return None

    from web.tenants import TenantNames

    auth = authenticator if authenticator is not None else Authenticator.from_env()
    app.add_middleware(TenantNames, render=plain_json)
    app.add_middleware(Authenticate, authenticator=auth, policy=HISTORY, render=plain_json)
    app.add_middleware(Health, checks={"history": history}, liveness=False)  # /health stays QuantumLeap's
    app.add_middleware(HttpMetrics, server="history")
    app.add_middleware(AccessLog)


def _error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "description": description}, status)


def _ql_error(status: int, detail: str) -> tuple[bytes, str]:
    """QuantumLeap's error body: {"error", "description"}."""
    return orjson.dumps({"error": "Payload Too Large" if status == 413 else "Bad Request", "description": detail}), \
        "application/json"


async def ql_error(request: Request, exc: QLError) -> Response:
    """An error of the history API, in QuantumLeap's shape."""
    return _error(exc.status, exc.error, exc.description)


async def ngsi_ld_error(request: Request, exc: NgsiLdError) -> Response:
    """An NGSI-LD error raised below (the temporal service), in QuantumLeap's shape."""
    return _error(exc.status if 400 <= exc.status < 500 else 500, type(exc).__name__, exc.detail)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A parameter FastAPI refused."""
    return _error(400, "Bad Request", str(exc))


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors (no such route, method not allowed)."""
    if exc.status_code == 404:
        return _error(404, "Not Found", f"no resource at {request.url.path}")
    response = _error(exc.status_code, "Bad Request" if exc.status_code < 500 else "Internal Error", str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: logged, a 500 without secrets."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(500, "Internal Error", scrub(f"{type(exc).__name__}: {exc}"))  # ops: no secret in a body


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def exception_handlers() -> dict[int | type[Exception], Handler]:
    """Every error in QuantumLeap's {"error", "description"} shape (FastAPI's own defaults replaced)."""
    return {QLError: ql_error, NgsiLdError: ngsi_ld_error, RequestValidationError: validation_error,
            StarletteHTTPException: http_error, Exception: unexpected}


def create_quantumleap_app(state: StateSource, *, prefix: str = "/v2", settings: QuantumLeapSettings | None = None,
                           authenticator: Any = None, fastapi_options: dict[str, Any] | None = None) -> FastAPI:
    """The /v2 QuantumLeap API reading and writing the history of the broker whose app.state `state()` returns.

    `prefix` "/v2" serves it on a port of its own (with /version and /health at the root);
    "" when the broker mounts it at /v2. `fastapi_options`: more arguments for FastAPI(); the broker
    gives its own `telemetry` choice (broker.app.fastapi_telemetry), so that a mounted app does not ask
    OpenTelemetry for its providers on every request when the broker does not (issue 16, notifyfast21).
    """
    app = FastAPI(title="metropole QuantumLeap-compatible history API", version=QL_VERSION,
                  exception_handlers=exception_handlers(), openapi_url=None, docs_url=None, redoc_url=None,
                  redirect_slashes=False, **(fastapi_options or {}))
    # innermost: POST /notify without FastAPI's router and dependency solver (web.fastroutes, issue 16)
    hot = next(r for r in notify.router.routes if isinstance(r, APIRoute) and r.endpoint is notify.notify)
    app.add_middleware(FastRoutes, routes=lambda: [plan(hot, prefix)], router=app.router)
    app.add_middleware(ResourcePaths)
    if prefix:  # on its own port, the body limit of the broker's (METROPOLE_BROKER_MAX_BODY_BYTES), QuantumLeap's shape
        app.add_middleware(RequestLimits, max_bytes=lambda: limits.current().max_body_bytes, render=_ql_error)
    if prefix:  # ops: on a port of its own; mounted in the broker, the broker's middlewares cover it
        _operations(app, state, authenticator)
    app.state.ql_service = QuantumLeapService(state)
    app.state.ql_settings = settings or QuantumLeapSettings.from_env()
    if prefix:
        app.add_api_route(prefix, meta.list_of_api, methods=["GET"])
    for module in (meta, notify, subscribe, entities, types, attrs):
        app.include_router(module.router, prefix=prefix)
    if prefix:
        app.include_router(meta.root)
    return app
