"""The provisioning app (port 4041): groups, devices, about/version, metrics, rejected messages.

    app = create_provisioning_app(settings, registry, metrics)

The registry is opened and closed by whoever owns it (the `metropole run`
wiring); pass ``own_registry=True`` to let the app's lifespan do it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from agents.metrics import CONTENT_TYPE, Metrics
from agents.provisioning import devices, errors, groups
from agents.provisioning.deps import page
from agents.registry import Registry
from agents.settings import VERSION, AgentSettings
from web.resources import ResourcePaths

LIB_VERSION = "4.0.0"  # the iotagent-node-lib provisioning API this one follows


def create_provisioning_app(
    settings: AgentSettings, registry: Registry, metrics: Metrics, *, own_registry: bool = False
) -> FastAPI:
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
    app.add_exception_handler(errors.ProvisioningError, errors.handle)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"name": "SERVER_ERROR", "message": f"{type(exc).__name__}: {exc}"}, status_code=500)

    app.include_router(groups.router(registry))
    app.include_router(devices.router(registry))

    @app.get("/iot/about")
    async def about() -> JSONResponse:
        return JSONResponse({"libVersion": LIB_VERSION, "port": str(settings.provisioning_port), "baseRoot": "/",
                             "version": VERSION})

    @app.get("/version")
    async def version() -> JSONResponse:
        return JSONResponse({"component": "metropole-iot-agent", "version": VERSION, "libVersion": LIB_VERSION,
                             "protocols": ["IoTA-JSON", "IoTA-UL"], "ngsi": "NGSI-LD"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/iot/rejections")
    async def rejections(request: Request) -> JSONResponse:
        """Dead letters, newest first; filter with reason, apikey, device_id, service; page with limit, offset."""
        limit, offset = page(request)
        q = request.query_params
        result = await registry.list_dead_letters(
            reason=q.get("reason"), apikey=q.get("apikey"), device_id=q.get("device_id"), service=q.get("service"),
            limit=100 if limit is None else limit, offset=offset,
        )
        return JSONResponse({"count": result.count, "rejections": result.items})

    @app.delete("/iot/rejections")
    async def purge_rejections(request: Request) -> Response:
        await registry.purge_dead_letters(request.query_params.get("before"))
        return Response(status_code=204)

    return app
