"""LoRaWAN network servers over HTTP: The Things Stack's webhooks and ChirpStack's HTTP integration (port 7896).

    POST /iot/lorawan/tts[?k=<apikey>]               a TTS webhook: uplink messages, downlink events
    POST /iot/lorawan/chirpstack?event=<ev>[&k=...]  ChirpStack's HTTP integration (JSON encoding):
                                                     `up` uplinks, `ack` / `txack` downlink events

The tenant is the `fiware-service` / `fiware-servicepath` of the request (both
network servers let a webhook send headers of one's choice); without them,
every service's devices are looked at. `k` is required when the device (or its
group) has an apikey. An uplink goes through the intake like any measure and
is answered once durable:

    200  accepted (the outbox has it); `X-Rejected-Attributes` names values refused alone
    202  taken, but the device's data was refused (codec_error, unknown_device: its body says why, and
         /iot/rejections lists it). Not a 4xx: a network server counts failed webhook calls against the
         webhook's health and may stop calling it for the whole application, for one device's bad frame
    400  BAD_PAYLOAD: not a network server message (a misconfigured webhook: its failures should show there)
    404  DEVICE_GROUP_NOT_FOUND: `k` is not the device's apikey
    413  PAYLOAD_TOO_LARGE, 503 OUTBOX_UNAVAILABLE (send it again), as for every measure

Downlink events (TTS `downlink_sent` / `_ack` / `_nack` / `_failed` / `_queued`,
ChirpStack `txack` / `ack`) move the command they name along (agents.commands);
other events (joins, status, location) are answered 200 and not used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from agents.messages import Inbound, Rejected
from agents.transports.http_errors import JSON, error_response, for_rejection, unsupported_type
from agents.transports.intake import Intake

__all__ = ["DOWNLINK_EVENTS", "LorawanEvents", "add_lorawan_routes"]

#: reasons about one device's data, answered 202 (see the module's docstring)
_DEVICE_REASONS = frozenset({"codec_error", "unknown_device", "wrong_type", "too_long"})
#: TTS message members of downlink events (Data Formats, "Downlink Events")
DOWNLINK_EVENTS = ("downlink_queued", "downlink_sent", "downlink_ack", "downlink_nack", "downlink_failed")


class LorawanEvents(Protocol):
    """What the transports ask of the command service about LoRaWAN downlinks."""

    async def lorawan_event(self, network: str, event: str, body: bytes) -> None:
        """A network server's downlink event (`sent`, `ack`, `nack`, `failed`, `queued`, `txack`)."""


def add_lorawan_routes(app: FastAPI, intake: Intake, *, read_body: Callable[[Request, int], Awaitable[tuple[bytes, int]]],
                       now: Callable[[], str], max_message_bytes: int = 0, events: LorawanEvents | None = None) -> None:
    """Add the two network server routes to the southbound HTTP app."""

    async def uplink(request: Request, protocol: str, body: bytes, size: int) -> Response:
        headers = request.headers
        message = Inbound("http", protocol, request.query_params.get("k", ""), "", body, now(), None,
                          request.url.path, size, headers.get("fiware-service"),
                          headers.get("fiware-servicepath") if "fiware-service" in headers else None)
        ok, outcome = await intake.accept_outcome(message)
        if not ok:
            return error_response(503, "OUTBOX_UNAVAILABLE", "The uplink could not be stored; send it again")
        if outcome is not None and outcome.rejection is not None:
            status, name = for_rejection(outcome.rejection)
            if outcome.rejection.reason in _DEVICE_REASONS:
                status = 202
            return error_response(status, name, outcome.rejection.detail)
        answer = Response(b"", status_code=200)
        if outcome is not None and outcome.dropped:
            answer.headers["X-Rejected-Attributes"] = ",".join(sorted({d.attribute or "" for d in outcome.dropped}))
        return answer

    async def read(request: Request) -> tuple[bytes, int] | Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media and media != JSON:
            return unsupported_type(f"{JSON} (ChirpStack: the HTTP integration's JSON encoding, not Protobuf)")
        return await read_body(request, max_message_bytes)

    @app.post("/iot/lorawan/tts")
    async def tts_webhook(request: Request) -> Response:
        """A The Things Stack webhook: uplink messages and downlink events."""
        got = await read(request)
        if isinstance(got, Response):
            return got
        body, size = got
        if size >= 0:  # over the limit: the intake refuses it (413) without reading it
            return await uplink(request, "lorawan-tts", body, size)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and "uplink_message" not in doc:
            event = next((k for k in DOWNLINK_EVENTS if k in doc), None)
            if event is not None and events is not None:
                await events.lorawan_event("tts", event.removeprefix("downlink_"), body)
            if event is not None or "end_device_ids" in doc:
                return Response(b"", status_code=200)  # a join, a location, a service event: not ours to use
        return await uplink(request, "lorawan-tts", body, size)

    @app.post("/iot/lorawan/chirpstack")
    async def chirpstack_integration(request: Request) -> Response:
        """ChirpStack's HTTP integration: `?event=up` uplinks, `ack` and `txack` downlink events."""
        event = request.query_params.get("event", "")
        got = await read(request)
        if isinstance(got, Response):
            return got
        body, size = got
        if event == "up":
            return await uplink(request, "lorawan-chirpstack", body, size)
        if event in ("ack", "txack") and events is not None and size < 0:
            await events.lorawan_event("chirpstack", event, body)
        if not event:
            rejection = Rejected("malformed_payload", "no ?event=: configure the endpoint as ChirpStack's HTTP"
                                 " integration, which names the event")
            status, name = for_rejection(rejection)
            return error_response(status, name, rejection.detail)
        return Response(b"", status_code=200)
