"""The HTTP southbound transport (port 7896), paths of iotagent-json and iotagent-ul.

    POST /iot/json?k=<apikey>&i=<device_id>              JSON object or array (multi-measure)
    POST /iot/json/attrs/<attr>?k=&i=                    one attribute's value
    POST /iot/d?k=&i=                                    Ultralight 2.0 text (`t|21.5|h|40`)
    GET  /iot/about                                      what the FIWARE agents answer there

The answer is 200 only once the measure is in the outbox (durable), 503 when
the outbox could not take it (the device should send again). A missing `k` or
`i` is a 400 with the iotagent-node-lib error shape (`name`, `message`), so
devices written against the FIWARE agents read it unchanged. The time spent
is returned in `X-Processing-Time` (milliseconds), as iotagent-json does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from agents.messages import Inbound
from agents.transports.intake import Intake

__all__ = ["create_http_app"]

JSON = "application/json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _error(status: int, name: str, message: str) -> Response:
    return Response(orjson.dumps({"name": name, "message": message}), status_code=status, media_type=JSON)


def create_http_app(intake: Intake, *, json_resource: str = "/iot/json", ul_resource: str = "/iot/d",
                    version: str = "0.1.0") -> FastAPI:
    """The FastAPI app of the southbound HTTP transport."""
    app = FastAPI(title="Metropole IoT agent, HTTP southbound", version=version, docs_url=None, redoc_url=None)

    async def measure(request: Request, protocol: str, attribute: str | None = None) -> Response:
        started = time.perf_counter()
        apikey = request.query_params.get("k", "")
        device_id = request.query_params.get("i", "")
        if not apikey or not device_id:
            return _error(400, "MANDATORY_PARAMS_NOT_FOUND_HTTP",
                          "Some of the mandatory params weren't found in the request: k, i")
        body = await request.body()
        message = Inbound(
            transport="http",
            protocol=protocol,
            apikey=apikey,
            device_id=device_id,
            payload=body,
            received_at=_now(),
            attribute=attribute,
            topic=request.url.path,
        )
        if not await intake.accept(message):
            return _error(503, "OUTBOX_UNAVAILABLE", "The measure could not be stored; send it again")
        elapsed = f"{(time.perf_counter() - started) * 1000:.0f}"
        return Response(b"", status_code=200, headers={"X-Processing-Time": elapsed})

    @app.post(json_resource)
    async def json_measure(request: Request) -> Response:
        """JSON measures of one device (iotagent-json HTTP binding)."""
        return await measure(request, "json")

    @app.post(json_resource + "/attrs/{attribute}")
    async def json_single(request: Request, attribute: str) -> Response:
        """One attribute's value (iotagent-json single-attribute measure)."""
        return await measure(request, "json", attribute)

    @app.post(ul_resource)
    async def ul_measure(request: Request) -> Response:
        """Ultralight 2.0 measures of one device (iotagent-ul HTTP binding)."""
        return await measure(request, "ul")

    @app.get("/iot/about")
    async def about() -> Response:
        return Response(orjson.dumps({"libVersion": version, "port": "7896", "baseRoot": "/"}), media_type=JSON)

    return app
