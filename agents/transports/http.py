"""The HTTP southbound transport (port 7896), paths of iotagent-json and iotagent-ul.

    POST /iot/json?k=<apikey>&i=<device_id>              JSON object or array (multi-measure)
    POST /iot/json/attrs/<attr>?k=&i=                    one attribute's value
    POST /iot/d?k=&i=                                    Ultralight 2.0 text (`t|21.5|h|40`)
    GET  /iot/json?k=&i=&getCmd=1, GET /iot/d?...        the device polls its pending commands
    POST /iot/json/commands?k=&i=, POST /iot/d/commands  the device's answer to a command (cmdexe)
    GET  /iot/about                                      what the FIWARE agents answer there
    POST /iot/lorawan/tts, /iot/lorawan/chirpstack       LoRaWAN network servers' webhooks
                                                         (agents.transports.lorawan_http)

A measure is answered 200 only once it is in the outbox (durable), and 503
when the outbox could not take it (the device should send again). Bad input
is answered as the FIWARE agents answer it (`agents.transports.http_errors`:
400 BAD_PAYLOAD, 404 DEVICE_NOT_FOUND, 413 over the size limits ...) with
the iotagent-node-lib body `{"name", "message"}`, and recorded as a
rejection. A message some of whose attributes were refused while the others
were kept is a 200: what was kept is durable; the refused attributes are in
`/iot/rejections` and named in the `X-Rejected-Attributes` header. The time
spent is returned in `X-Processing-Time` (milliseconds), as iotagent-json does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from agents.messages import Inbound, Rejected
from agents.transports.http_errors import JSON, error_response, for_rejection, mandatory_params, unsupported_type
from agents.transports.intake import Intake
from agents.transports.lorawan_http import LorawanEvents, add_lorawan_routes
from models.times import utc_iso

__all__ = ["CommandPort", "create_http_app"]

#: media types a measure may be sent as (iotagent-json HTTPBinding.js:108-119); none at all is read as the path says
_READABLE = ("application/json", "text/plain", "application/octet-stream", "application/soap+xml")


class CommandPort(Protocol):
    """What the HTTP transport asks of the command service (agents.commands)."""

    async def poll(self, apikey: str, device_id: str, protocol: str) -> tuple[bytes, str] | None:
        """The device's pending commands as a body and its media type (marking them DELIVERED); None: none."""

    async def result(self, apikey: str, device_id: str, protocol: str, payload: bytes) -> Rejected | None:
        """A device's answer to commands (cmdexe); a Rejected when it cannot be taken."""


def _now() -> str:
    return utc_iso(timespec="microseconds")


def _ms(started: float) -> dict[str, str]:
    return {"X-Processing-Time": f"{(time.perf_counter() - started) * 1000:.0f}"}


async def _body(request: Request, limit: int) -> tuple[bytes, int]:
    """(the body, or its first `limit` + 1 bytes when it is longer; its size as far as known)."""
    declared = request.headers.get("content-length", "")
    if limit and declared.isdigit() and int(declared) > limit:
        return b"", int(declared)  # not read at all: the client said how large it is
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if limit and size > limit:
            break  # what is left is never read into memory
    body = b"".join(chunks)
    return (body[: limit + 1], size) if limit and size > limit else (body, -1)


def create_http_app(intake: Intake, *, json_resource: str = "/iot/json", ul_resource: str = "/iot/d",
                    version: str = "0.1.0", max_message_bytes: int = 0,
                    on_refused: Callable[[Inbound, Rejected], Awaitable[None]] | None = None,
                    commands: CommandPort | None = None, lorawan_events: LorawanEvents | None = None) -> FastAPI:
    """The FastAPI app of the southbound HTTP transport.

    `on_refused` records what this transport refuses before the agent core sees it (a media type it does
    not read); `commands` serves the devices' command polling and answers; `lorawan_events` takes the
    network servers' downlink events.
    """
    app = FastAPI(title="Metropole IoT agent, HTTP southbound", version=version, docs_url=None, redoc_url=None)
    add_lorawan_routes(app, intake, read_body=_body, now=_now, max_message_bytes=max_message_bytes,
                       events=lorawan_events)

    def params(request: Request) -> tuple[str, str, Response | None]:
        apikey = request.query_params.get("k", "")
        device_id = request.query_params.get("i", "")
        missing = [name for name, value in (("API Key", apikey), ("Device Id", device_id)) if not value]
        return apikey, device_id, mandatory_params(missing) if missing else None

    async def polled(request: Request, apikey: str, device_id: str, protocol: str, started: float) -> Response:
        """The pending commands of a device that asked for them (getCmd=1), or an empty answer."""
        found = await commands.poll(apikey, device_id, protocol) if commands is not None else None
        if found is None:
            body, media = (b"{}", JSON) if protocol == "json" else (b"", "text/plain")
        else:
            body, media = found
        return Response(body, status_code=200, media_type=media, headers=_ms(started))

    async def measure(request: Request, protocol: str, attribute: str | None = None) -> Response:
        started = time.perf_counter()
        apikey, device_id, missing = params(request)
        if missing is not None:
            return missing
        body, size = await _body(request, max_message_bytes)
        message = Inbound(transport="http", protocol=protocol, apikey=apikey, device_id=device_id, payload=body,
                          received_at=_now(), attribute=attribute, topic=request.url.path, size=size)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media and media not in _READABLE:
            accepted = ", ".join(_READABLE)
            if on_refused is not None:
                await on_refused(message, Rejected("unsupported_content_type", f"a body of type {media!r}; the"
                                                   f" binding reads {accepted}"))
            return unsupported_type(accepted)
        ok, outcome = await intake.accept_outcome(message)
        if not ok:
            return error_response(503, "OUTBOX_UNAVAILABLE", "The measure could not be stored; send it again",
                                  _ms(started))
        if outcome is not None and outcome.rejection is not None:
            status, name = for_rejection(outcome.rejection)
            return error_response(status, name, outcome.rejection.detail, _ms(started))
        headers = _ms(started)
        if outcome is not None and outcome.dropped:
            headers["X-Rejected-Attributes"] = ",".join(sorted({d.attribute or "" for d in outcome.dropped}))
        if request.query_params.get("getCmd") == "1":
            return await polled(request, apikey, device_id, protocol, started)
        return Response(b"", status_code=200, headers=headers)

    async def poll(request: Request, protocol: str) -> Response:
        started = time.perf_counter()
        apikey, device_id, missing = params(request)
        if missing is not None:
            return missing
        return await polled(request, apikey, device_id, protocol, started)

    async def command_result(request: Request, protocol: str) -> Response:
        started = time.perf_counter()
        apikey, device_id, missing = params(request)
        if missing is not None:
            return missing
        body, size = await _body(request, max_message_bytes)
        if size >= 0:
            return error_response(413, "PAYLOAD_TOO_LARGE", f"a command answer of {size} bytes, over the limit of"
                                  f" {max_message_bytes}", _ms(started))
        if commands is None:
            return error_response(404, "COMMAND_NOT_FOUND", "this agent runs no command service", _ms(started))
        refused = await commands.result(apikey, device_id, protocol, body)
        if refused is not None:
            status, name = for_rejection(refused)
            return error_response(status, name, refused.detail, _ms(started))
        return Response(b"", status_code=200, headers=_ms(started))

    @app.post(json_resource)
    async def json_measure(request: Request) -> Response:
        """JSON measures of one device (iotagent-json HTTP binding)."""
        return await measure(request, "json")

    @app.get(json_resource)
    async def json_poll(request: Request) -> Response:
        """A JSON device polls its commands (getCmd=1)."""
        return await poll(request, "json")

    @app.post(json_resource + "/commands")
    async def json_command_result(request: Request) -> Response:
        """A JSON device's answer to its commands (iotagent-json HTTP_COMMANDS_PATH)."""
        return await command_result(request, "json")

    @app.post(json_resource + "/attrs/{attribute}")
    async def json_single(request: Request, attribute: str) -> Response:
        """One attribute's value (iotagent-json single-attribute measure)."""
        return await measure(request, "json", attribute)

    @app.post(ul_resource)
    async def ul_measure(request: Request) -> Response:
        """Ultralight 2.0 measures of one device (iotagent-ul HTTP binding)."""
        return await measure(request, "ul")

    @app.get(ul_resource)
    async def ul_poll(request: Request) -> Response:
        """An Ultralight device polls its commands (getCmd=1)."""
        return await poll(request, "ul")

    @app.post(ul_resource + "/commands")
    async def ul_command_result(request: Request) -> Response:
        """An Ultralight device's answer to its commands (`<device>@<command>|<result>`)."""
        return await command_result(request, "ul")

    @app.get("/iot/about")
    async def about() -> Response:
        return Response(orjson.dumps({"libVersion": version, "port": "7896", "baseRoot": "/"}), media_type=JSON)

    return app
