"""The embedded NGSI-LD broker as a FastAPI application: `create_app(settings)`.

The lifespan opens the store and a ContextResolver (hosted contexts
restored from the store) and builds the services; the exception handlers
turn every error into what clause 6.3 asks: NgsiLdError -> ProblemDetails
with its status, 415 bare, 406 with the offered types, FastAPI's own
validation errors -> InvalidRequest, anything else -> InternalError (logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from broker import limits, ops
from broker.api import (
    attributes,
    batch,
    contexts,
    csources,  # federation
    entities,
    subscriptions,  # subscriptions
    temporal,  # temporal
    types,
    version,
)
from broker.api.deps import API
from broker.http import JSON, MediaTypeError, problem_response
from broker.service.batch import BatchService
from broker.service.discovery import DiscoveryService
from broker.service.entities import EntityService
from broker.service.queries import QueryService
from broker.settings import BrokerSettings
from broker.store import open_store
from models.context import ContextResolver
from models.errors import BadRequestData, InternalError, InvalidRequest, NgsiLdError, ResourceNotFound
from web.request_limits import RequestLimits
from web.resources import ResourcePaths
from web.secrets import redact_url, scrub

log = logging.getLogger("broker")


def create_app(settings: BrokerSettings, *, authenticator: Any = None) -> FastAPI:
    """The broker application for these settings; the store is opened by the lifespan.

    `authenticator` (web.auth.Authenticator) defaults to METROPOLE_AUTH_*: off unless configured.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.resolved_store_url)
        await store.open()
        ops.instrument_store(store)  # ops: store timings for /metrics
        base_url = f"http://{settings.host}:{settings.port}{API}/jsonldContexts"
        resolver = ContextResolver(
            timeout=settings.context_timeout, max_bytes=settings.context_max_bytes, hosted_base_url=base_url,
            failure_ttl=settings.context_failure_ttl, workers=settings.context_workers,
            allowed_hosts=settings.context_allowed_hosts, refuse_private=settings.context_refuse_private,
        )
        await contexts.restore_hosted(resolver, store, base_url)
        state = app.state
        state.settings = settings
        state.store = store
        state.resolver = resolver
        state.entities = EntityService(store)
        state.batch = BatchService(store)
        state.queries = QueryService(store)
        state.discovery = DiscoveryService(store)
        state.identity = version.new_identity()
        state.started_at = time.time()  # ops: contextSourceUptime
        # --- subscriptions (broker.subscriptions): follows the change log; shuts down before the store
        from broker.subscriptions.runtime import Subscriptions

        state.subscriptions = Subscriptions(store, resolver)
        await state.subscriptions.start()
        if not hasattr(state, "change_consumers"):
            state.change_consumers = []
        state.change_consumers.append(state.subscriptions)
        # --- end subscriptions
        # --- federation (broker.federation): registrations and the forwarding of distributed operations
        from broker.federation.csubs import CSourceSubscriptions
        from broker.federation.service import RegistrationService

        state.registrations = RegistrationService(store, resolver)
        state.csource_subscriptions = CSourceSubscriptions(store, resolver, state.registrations)
        await state.csource_subscriptions.start()
        from broker.federation.forward import Forwarder

        state.forwarder = Forwarder(state.registrations, me=f"{settings.host}:{settings.port}",
                                    timeout=settings.federation_timeout)
        await state.forwarder.start()
        # --- end federation
        # --- temporal (broker.temporal): history recorder + change-log trim; stops before the store
        from broker.service.temporal import TemporalService
        from broker.temporal.runtime import start_temporal, stop_temporal

        await start_temporal(state, store)
        state.temporal = TemporalService(store, state.history, state.recorder, limit=settings.temporal_limit)
        # --- end temporal
        try:
            yield
        finally:
            await stop_temporal(state)  # temporal
            await state.csource_subscriptions.stop()  # federation
            await state.forwarder.stop()  # federation
            await state.subscriptions.stop()  # subscriptions
            await store.close()
            resolver.close()
            log.info("broker stopped: store %s closed", redact_url(settings.resolved_store_url))  # ops

    app = FastAPI(title="metropole NGSI-LD broker", version=version.VERSION, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    app.add_middleware(ResourcePaths)
    limits.configure(settings.limits)
    app.add_middleware(RequestLimits, max_bytes=lambda: limits.current().max_body_bytes)  # 413, %00 (issue 17)
    ops.wire(app, authenticator)  # ops: authentication, /health, /ready, /metrics, access log
    for module in (entities, batch, types, attributes, contexts, version):
        app.include_router(module.router)
    app.include_router(subscriptions.router)  # subscriptions
    app.include_router(temporal.router)  # temporal
    app.include_router(csources.router)  # federation
    from broker.federation import subs as federated_subs

    app.include_router(federated_subs.router)  # federation: relayed notifications of copied subscriptions
    # --- quantumleap (broker.quantumleap): the /v2 history API over the same app.state (also served on 8668 by `run`)
    from broker.quantumleap import create_quantumleap_app
    from broker.quantumleap.routes.meta import list_of_api

    app.add_api_route("/v2", list_of_api, methods=["GET"])  # the mount below answers only paths under /v2/
    app.mount("/v2", create_quantumleap_app(lambda: app.state, prefix=""))
    # --- end quantumleap

    @app.exception_handler(NgsiLdError)
    async def ngsi_ld_error(request: Request, exc: NgsiLdError) -> Response:
        return problem_response(exc)

    @app.exception_handler(MediaTypeError)
    async def media_type_error(request: Request, exc: MediaTypeError) -> Response:
        return Response(exc.body or None, status_code=exc.status, media_type=JSON if exc.body else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
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
        return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(InternalError(scrub(f"{type(exc).__name__}: {exc}")))

    return app
