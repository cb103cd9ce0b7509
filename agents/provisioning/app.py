"""The provisioning app (port 4041): groups, devices, the LoRaWAN codecs, about/version, metrics, diagnostics.

    app = create_provisioning_app(settings, registry, metrics)

The registry is opened and closed by whoever owns it (the `metropole run`
wiring); pass ``own_registry=True`` to let the app's lifespan do it. What the
handlers share is one ProvisioningState on `app.state.provisioning`
(state.py); the routers are module-level, one module per resource. The
runtime also passes its outbox (the tenant-scoped outbox routes and counts in
/metrics), provisioning hooks and the command service (agents.provisioning.commands: what brokers call).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters.outbox import Outbox
from agents.commands.service import CommandService
from agents.metrics import CONTENT_TYPE, Metrics
from agents.provisioning import codecs, commands, devices, diagnostics, errors, groups
from agents.provisioning.hooks import Hooks
from agents.provisioning.state import ProvisioningState, provisioning_state
from agents.registry import Registry
from agents.settings import VERSION, AgentSettings
from web.request_limits import RequestLimits
from web.resources import ResourcePaths

LIB_VERSION = "4.0.0"  # the iotagent-node-lib provisioning API this one follows


def _agent_error(status: int, detail: str) -> tuple[bytes, str]:
    """The FIWARE agents' error body, {"name", "message"}."""
    name = "REQUEST_ENTITY_TOO_LARGE" if status == 413 else "BAD_REQUEST"
    return orjson.dumps({"name": name, "message": detail}), "application/json"


meta = APIRouter()
"""/iot/about, /version and /metrics."""


@meta.get("/iot/about")
async def about(request: Request) -> JSONResponse:
    """iotagent-node-lib's about: the provisioning API version this one follows, the port."""
    port = provisioning_state(request).settings.provisioning_port
    return JSONResponse({"libVersion": LIB_VERSION, "port": str(port), "baseRoot": "/", "version": VERSION})


@meta.get("/version")
async def version() -> JSONResponse:
    """The agent's version, protocols and northbound API."""
    return JSONResponse({"component": "metropole-iot-agent", "version": VERSION, "libVersion": LIB_VERSION,
                         "protocols": ["IoTA-JSON", "IoTA-UL", "LoRaWAN"], "ngsi": "NGSI-LD"})


@meta.get("/metrics")
async def prometheus(request: Request) -> Response:
    """The agent's metrics in the Prometheus text format (outbox counts read now)."""
    state = provisioning_state(request)
    if state.outbox is not None:
        await asyncio.to_thread(diagnostics.refresh_gauges, state.outbox, state.metrics)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


async def server_error(_: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: 500 SERVER_ERROR, as the FIWARE agents answer it."""
    return JSONResponse({"name": "SERVER_ERROR", "message": f"{type(exc).__name__}: {exc}"}, status_code=500)


def lifespan_of(registry: Registry, own_registry: bool) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open and close the registry with the app when it owns it; nothing otherwise."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if own_registry:
            await registry.open()
        try:
            yield
        finally:
            if own_registry:
                await registry.close()

    return lifespan


def create_provisioning_app(
    settings: AgentSettings, registry: Registry, metrics: Metrics, *, own_registry: bool = False,
    outbox: Outbox | None = None, hooks: Hooks | None = None, command_service: CommandService | None = None,
) -> FastAPI:
    """The FastAPI app of the provisioning API; with `command_service`, also what brokers call for commands
    (agents.provisioning.commands)."""
    app = FastAPI(title="metropole IoT agent provisioning", version=VERSION, lifespan=lifespan_of(registry, own_registry),
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.provisioning = ProvisioningState(settings, registry, metrics, hooks or Hooks(check_cbroker=False), outbox,
                                                command_service)
    app.add_middleware(ResourcePaths)
    # issue 17: a provisioning body past METROPOLE_AGENT_MAX_PROVISIONING_BYTES is a 413, never read whole
    app.add_middleware(RequestLimits, max_bytes=lambda: settings.max_provisioning_bytes, render=_agent_error)
    app.add_exception_handler(errors.ProvisioningError, errors.handle)
    app.add_exception_handler(Exception, server_error)
    outbox_routes = [diagnostics.outbox_router] if outbox is not None else []
    command_routes = [commands.router] if command_service is not None else []
    for router in (groups.router, devices.router, diagnostics.router, *outbox_routes, codecs.router, *command_routes,
                   meta):
        app.include_router(router)
    return app
