"""The provisioning app (port 4041): groups, devices, the LoRaWAN codecs, about/version, metrics, diagnostics.

    app = create_provisioning_app(settings, registry, metrics)

The registry is opened and closed by whoever owns it (the `metropole run`
wiring); pass ``own_registry=True`` to let the app's lifespan do it. The
runtime also passes its outbox (the tenant-scoped outbox routes and counts in
/metrics), provisioning hooks and the command service's NGSI-LD routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters.outbox import Outbox
from agents.metrics import CONTENT_TYPE, Metrics
from agents.provisioning import codecs, devices, diagnostics, errors, groups
from agents.provisioning.hooks import Hooks
from agents.registry import Registry
from agents.settings import VERSION, AgentSettings
from web.request_limits import RequestLimits
from web.resources import ResourcePaths

LIB_VERSION = "4.0.0"  # the iotagent-node-lib provisioning API this one follows


def _agent_error(status: int, detail: str) -> tuple[bytes, str]:
    """The FIWARE agents' error body, {"name", "message"}."""
    name = "REQUEST_ENTITY_TOO_LARGE" if status == 413 else "BAD_REQUEST"
    return orjson.dumps({"name": name, "message": detail}), "application/json"


def create_provisioning_app(
    settings: AgentSettings, registry: Registry, metrics: Metrics, *, own_registry: bool = False,
    outbox: Outbox | None = None, hooks: Hooks | None = None, routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The FastAPI app of the provisioning API."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if own_registry:
            await registry.open()
        try:
            yield
        finally:
            if own_registry:
                await registry.close()

    app = FastAPI(title="metropole IoT agent provisioning", version=VERSION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.add_middleware(ResourcePaths)
    # issue 17: a provisioning body past METROPOLE_AGENT_MAX_PROVISIONING_BYTES is a 413, never read whole
    app.add_middleware(RequestLimits, max_bytes=lambda: settings.max_provisioning_bytes, render=_agent_error)
    app.add_exception_handler(errors.ProvisioningError, errors.handle)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"name": "SERVER_ERROR", "message": f"{type(exc).__name__}: {exc}"}, status_code=500)

    hooks = hooks or Hooks(check_cbroker=False)
    app.include_router(groups.router(registry, hooks))
    app.include_router(devices.router(registry, hooks))
    app.include_router(diagnostics.router(registry, outbox))
    app.include_router(codecs.router())
    for extra in routers:
        app.include_router(extra)

    @app.get("/iot/about")
    async def about() -> JSONResponse:
        return JSONResponse({"libVersion": LIB_VERSION, "port": str(settings.provisioning_port), "baseRoot": "/",
                             "version": VERSION})

    @app.get("/version")
    async def version() -> JSONResponse:
        return JSONResponse({"component": "metropole-iot-agent", "version": VERSION, "libVersion": LIB_VERSION,
                             "protocols": ["IoTA-JSON", "IoTA-UL", "LoRaWAN"], "ngsi": "NGSI-LD"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        if outbox is not None:
            await asyncio.to_thread(diagnostics.refresh_gauges, outbox, metrics)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app
