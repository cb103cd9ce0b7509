"""The embedded NGSI-LD broker as a FastAPI application: `create_app(settings)`.

The lifespan (`open_broker`, `close_broker`) opens the store and a
ContextResolver (hosted contexts restored from the store), starts
subscriptions, federation and history on them in that order and stops them
in reverse; what it opened is one typed record, `app.state.broker`
(broker.state). The routes are the module-level routers of broker.api, one
module per resource; the module-level exception handlers turn every error
into what clause 6.3 asks: NgsiLdError -> ProblemDetails with its status,
415 bare, 406 with the offered types, FastAPI's own validation errors ->
InvalidRequest, anything else -> InternalError (logged).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from broker import limits, ops
from broker.api import (
    attributes,
    batch,
    contexts,
    csources,  # federation
    entities,
    entitymaps,  # federation
    subscriptions,  # subscriptions
    temporal,  # temporal
    types,
    version,
)
from broker.api.deps import API
from broker.federation import subs as federated_subs
from broker.federation.csubs import CSourceSubscriptions
from broker.federation.forward import Forwarder
from broker.federation.service import RegistrationService
from broker.http import JSON, MediaTypeError, problem_response
from broker.quantumleap import create_quantumleap_app
from broker.quantumleap.routes.meta import list_of_api
from broker.service.batch import BatchService
from broker.service.discovery import DiscoveryService
from broker.service.entities import EntityService
from broker.service.queries import QueryService
from broker.service.temporal import TemporalService
from broker.settings import BrokerSettings
from broker.state import BrokerState, state_source
from broker.store import STORES
from broker.subscriptions.runtime import Subscriptions
from broker.temporal.runtime import ChangeConsumer, open_history, start_temporal, stop_temporal
from models.context import ContextResolver
from models.errors import BadRequestData, InternalError, InvalidRequest, NgsiLdError, ResourceNotFound
from storage.database import open_database
from storage.urls import parse_database_url
from web.fastroutes import FastRoute, FastRoutes, plan
from web.request_limits import RequestLimits
from web.resources import ResourcePaths
from web.secrets import redact_url, scrub

log = logging.getLogger("broker")


async def open_broker(settings: BrokerSettings) -> BrokerState:
    """Open the database once (its connections, every owner's migrations), then the store and the context
    resolver, then start subscriptions, federation and history on the same connections."""
    database = open_database(parse_database_url(settings.resolved_store_url, "store"))
    store = STORES.open(database)
    base_url = f"http://{settings.host}:{settings.port}{API}/jsonldContexts"
    resolver = ContextResolver(
        timeout=settings.context_timeout, max_bytes=settings.context_max_bytes, hosted_base_url=base_url,
        failure_ttl=settings.context_failure_ttl, workers=settings.context_workers,
        allowed_hosts=settings.context_allowed_hosts, refuse_private=settings.context_refuse_private,
    )
    # subscriptions (broker.subscriptions) and history (broker.temporal) on the store's database backend
    subs = Subscriptions(store, resolver)
    history_storage = open_history(store)
    # storage.migrate: every owner's tables, in one place, before any of them opens
    await database.open([store.tables, history_storage.tables, subs.storage.tables])
    await store.open()
    ops.instrument_store(store)  # ops: store timings for /metrics
    await contexts.restore_hosted(resolver, store, base_url)
    consumers: list[ChangeConsumer] = []
    # subscriptions: follows the change log; shuts down before the store
    await subs.start()
    consumers.append(subs)
    # federation (broker.federation): registrations and the forwarding of distributed operations
    registrations = RegistrationService(store, resolver)
    csource_subscriptions = CSourceSubscriptions(store, resolver, registrations)
    await csource_subscriptions.start()
    forwarder = Forwarder(registrations, me=f"{settings.host}:{settings.port}", timeout=settings.federation_timeout,
                          public_url=settings.public_url)
    await forwarder.start()
    relay = federated_subs.SubscriptionRelay(store, subs.storage, registrations, forwarder, resolver, subs.enqueue)
    await relay.start()  # resumes the copies still to be made
    # temporal (broker.temporal): history recorder + change-log trim; stops before the store
    history = await start_temporal(store, consumers, history=history_storage)
    return BrokerState(
        settings=settings, database=database, store=store, resolver=resolver, identity=version.new_identity(),
        started_at=time.time(),  # ops: contextSourceUptime
        entities=EntityService(store), batch=BatchService(store), queries=QueryService(store),
        discovery=DiscoveryService(store), subscriptions=subs, registrations=registrations,
        csource_subscriptions=csource_subscriptions, forwarder=forwarder,
        subscription_relay=relay, history_runtime=history,
        temporal=TemporalService(store, history.history, history.recorder, limit=settings.temporal_limit),
        change_consumers=consumers)


async def close_broker(state: BrokerState) -> None:
    """Stop what `open_broker` started, in reverse: history, federation, subscriptions, the store, the database."""
    await stop_temporal(state.history_runtime)
    await state.csource_subscriptions.stop()
    await state.subscription_relay.stop()
    await state.forwarder.stop()
    await state.subscriptions.stop()
    await state.store.close()
    await state.database.close()  # the last of its users: its connections close
    state.resolver.close()
    log.info("broker stopped: store %s closed", redact_url(state.settings.resolved_store_url))  # ops


def lifespan_of(settings: BrokerSettings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan of a broker app: its state opened on `app.state.broker` while it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_broker(settings)
        app.state.broker = state
        try:
            yield
        finally:
            await close_broker(state)

    return lifespan


def create_app(settings: BrokerSettings, *, authenticator: Any = None) -> FastAPI:
    """The broker application for these settings; the store is opened by the lifespan.

    `authenticator` (web.auth.Authenticator) defaults to METROPOLE_AUTH_*: off unless configured.
    """
    app = FastAPI(title="metropole NGSI-LD broker", version=version.VERSION, lifespan=lifespan_of(settings),
                  exception_handlers=exception_handlers(), openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False,
                  **fastapi_telemetry())
    app.add_middleware(FastRoutes, routes=lambda: hot_routes(app), router=app.router)  # innermost (issue 16)
    app.add_middleware(ResourcePaths)
    limits.configure(settings.limits)
    app.add_middleware(RequestLimits, max_bytes=lambda: limits.current().max_body_bytes)  # 413, %00 (issue 17)
    ops.wire(app, authenticator)  # ops: authentication, /health, /ready, /metrics, access log
    for module in (entities, batch, types, attributes, contexts, version):
        app.include_router(module.router)
    app.include_router(subscriptions.router)  # subscriptions
    app.include_router(temporal.router)  # temporal
    app.include_router(csources.router)  # federation
    app.include_router(federated_subs.router)  # federation: relayed notifications of copied subscriptions
    app.include_router(entitymaps.router)  # federation: /entityMaps/{id} (6.32)
    # quantumleap (broker.quantumleap): the /v2 history API over the same state (also served on 8668 by `run`)
    app.add_api_route("/v2", list_of_api, methods=["GET"])  # the mount below answers only paths under /v2/
    app.mount("/v2", create_quantumleap_app(state_source(app), prefix="", fastapi_options=fastapi_telemetry()))
    return app


# OpenTelemetry's stand-in providers, returned until a real one is set: FastAPI's own test (fastapi.telemetry._api).
_DEFERRED_PROVIDERS = frozenset({("opentelemetry.trace", "ProxyTracerProvider"),
                                 ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
                                 ("opentelemetry._logs._internal", "ProxyLoggerProvider")})


def otel_configured() -> bool:
    """Whether the process has an OpenTelemetry provider now, or asks FastAPI to make one at start-up."""
    if os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return True
    try:
        from opentelemetry import _logs, metrics, trace
    except ImportError:
        return False
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    return any((type(p).__module__, type(p).__name__) not in _DEFERRED_PROVIDERS for p in providers)


def fastapi_telemetry() -> dict[str, Any]:
    """FastAPI's `telemetry` argument: off when no OpenTelemetry provider is set up when the app is made.

    FastAPI (0.165) asks OpenTelemetry for its three global providers on every request to learn
    whether to make spans and metrics; with none configured that was about 7 % of a PATCH's
    CPU in the handler's thread (issue 16, patch17). The broker's own metrics are Prometheus
    (web.metrics). A process that sets up OpenTelemetry before the app is made (as
    `opentelemetry-instrument` does) or sets FASTAPI_OTEL_AUTO_CONFIGURE=true keeps FastAPI's
    telemetry as it was; a provider installed only after create_app is not seen.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters or otel_configured():
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def hot_routes(app: FastAPI) -> list[FastRoute]:
    """The routes web.fastroutes serves directly: GET one entity, PATCH one attribute, the /v2 mount (issue 16)."""
    by_endpoint = {r.endpoint: r for r in entities.router.routes if isinstance(r, APIRoute)}
    v2 = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "/v2")
    return [plan(by_endpoint[entities.retrieve_entity]), plan(by_endpoint[entities.patch_attr]), plan(v2)]


async def ngsi_ld_error(request: Request, exc: NgsiLdError) -> Response:
    """An NgsiLdError: its ProblemDetails and status (clause 6.3)."""
    return problem_response(exc)


async def media_type_error(request: Request, exc: MediaTypeError) -> Response:
    """415 bare, 406 with the offered types."""
    return Response(exc.body or None, status_code=exc.status, media_type=JSON if exc.body else None)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's own validation errors: InvalidRequest."""
    detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
    return problem_response(InvalidRequest(detail or "invalid request"))


def missing_id(request: Request) -> bool:
    """Whether the path names an item resource with an empty id segment: `/entities//attrs`.

    Clauses 5.6.x.4 and 5.7.1.4 answer BadRequestData when "the Entity Id is not present"; routing
    alone would answer 404 (no such path). A trailing slash is another matter: `PATCH /entities/`
    names the collection (web.resources), which takes no PATCH: 405.
    """
    path = request.url.path
    if "//" not in path:
        return False
    scope = {**request.scope, "path": path.replace("//", "/-/", 1)}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Routing's 404 and 405 (and any other HTTPException) as ProblemDetails."""
    if exc.status_code == 404 and missing_id(request):
        return problem_response(BadRequestData(f"{request.method} {request.url.path}: the id is missing"))
    if exc.status_code == 404:
        return problem_response(ResourceNotFound(f"no resource at {request.url.path}"))
    if exc.status_code == 405:
        error = InvalidRequest(f"method {request.method} is not allowed on {request.url.path}")
        response = problem_response(error)
        response.status_code = 405
        return response
    return problem_response(InvalidRequest(str(exc.detail)))


async def unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: InternalError, logged, with no secret in the body."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(InternalError(scrub(f"{type(exc).__name__}: {exc}")))


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def exception_handlers() -> dict[int | type[Exception], Handler]:
    """Every error as clause 6.3 answers it (FastAPI's own defaults replaced)."""
    return {NgsiLdError: ngsi_ld_error, MediaTypeError: media_type_error, RequestValidationError: validation_error,
            StarletteHTTPException: http_error, Exception: unexpected}
