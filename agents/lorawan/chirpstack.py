"""ChirpStack v4: uplink events from its MQTT integration or HTTP integration, downlinks to its MQTT integration.

Formats as ChirpStack documents them (chirpstack.io/docs, "Integrations":
"Event types", "MQTT", "HTTP"): the `up` event is published on
`application/{application id}/device/{DevEUI}/event/up` (the HTTP integration
POSTs it with `?event=up`), JSON from the Protobuf `UplinkEvent`:

    deduplicationId, time, deviceInfo {tenantId, tenantName, applicationId, applicationName,
    deviceName, devEui, ...}, devAddr, dr, fCnt, fPort, data (base64), object?, rxInfo [{gatewayId,
    rssi, snr, ...}], txInfo

The Protobuf JSON mapping leaves out zero values, so an absent fPort or fCnt is 0.
A downlink is `{"devEui", "confirmed", "fPort", "data"}` on
`application/{application id}/device/{DevEUI}/command/down`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from agents.lorawan.envelope import (
    Downlink,
    EnvelopeError,
    Gateway,
    Uplink,
    b64decode,
    b64encode,
    dev_eui,
    integer,
    json_object,
    number,
    records,
    timestamp,
)

__all__ = ["downlink", "parse_uplink", "subscription", "topic_ids"]

_EVENT_TOPIC = re.compile(r"^application/(?P<app>[^/+#]+)/device/(?P<eui>[0-9A-Fa-f]{16})/event/(?P<event>[^/+#]+)$")


def subscription(application: str) -> str:
    """The MQTT filter of every uplink event of an application."""
    return f"application/{application}/device/+/event/up"


def topic_ids(topic: str) -> tuple[str, str, str]:
    """(application id, DevEUI, event) of an event topic."""
    m = _EVENT_TOPIC.match(topic)
    if m is None:
        raise EnvelopeError(f"{topic!r} is not a ChirpStack event topic (application/<id>/device/<DevEUI>/event/<event>)")
    return m["app"], m["eui"].upper(), m["event"]


def parse_uplink(body: bytes | str | Mapping[str, Any], topic: str | None = None) -> Uplink:
    """An `up` event (MQTT payload or HTTP integration body); the topic, when given, must be this device's `up`."""
    doc = json_object(body, "the uplink event")
    info = doc.get("deviceInfo")
    if not isinstance(info, Mapping):
        raise EnvelopeError("no deviceInfo: not a ChirpStack v4 event")
    eui = dev_eui(info.get("devEui"), "deviceInfo.devEui")
    application = info.get("applicationId") if isinstance(info.get("applicationId"), str) else None
    if topic is not None:
        t_app, t_eui, event = topic_ids(topic)
        if event != "up":
            raise EnvelopeError(f"a {event!r} event, not an uplink")
        if (t_app, t_eui) != (application, eui):
            raise EnvelopeError(f"the topic names device {t_app}/{t_eui}, the event {application}/{eui}")
    if "data" not in doc and "fPort" not in doc and "rxInfo" not in doc:
        raise EnvelopeError("not an uplink event (no data, fPort or rxInfo)")
    return Uplink(
        network="chirpstack",
        dev_eui=eui,
        device_name=info.get("deviceName") if isinstance(info.get("deviceName"), str) else None,
        application=application,
        tenant=info.get("tenantId") if isinstance(info.get("tenantId"), str) else None,
        fport=integer(doc.get("fPort"), "fPort", 0, 255, default=0) or 0,
        payload=b64decode(doc.get("data"), "data"),
        fcnt=integer(doc.get("fCnt"), "fCnt", 0, 2**32 - 1, default=0),
        decoded=dict(doc["object"]) if isinstance(doc.get("object"), Mapping) else None,
        received_at=timestamp(doc.get("time"), "time"),
        gateways=tuple(Gateway(str(rx.get("gatewayId") or ""), number(rx.get("rssi")), number(rx.get("snr")))
                       for rx in records(doc.get("rxInfo"), "rxInfo")),
    )


def downlink(application: str, eui: str, fport: int, payload: bytes, *, confirmed: bool = False,
             queue_id: str | None = None) -> Downlink:
    """The MQTT message that queues one downlink.

    `queue_id` (a UUID) is the DownlinkCommand's `id` (chirpstack/chirpstack api/proto/integration/
    integration.proto, "If left blank, a random UUID will be generated"): the queue item's id, which the
    `txack` and `ack` events carry back as `queueItemId`.
    """
    eui = dev_eui(eui, "the DevEUI")
    if not 1 <= fport <= 223:
        raise EnvelopeError(f"a downlink FPort is 1..223 (ChirpStack: must be > 0), not {fport}")
    body: dict[str, object] = {"devEui": eui.lower(), "confirmed": confirmed, "fPort": fport,
                               "data": b64encode(payload)}
    if queue_id is not None:
        body = {"id": queue_id, **body}
    return Downlink(f"application/{application}/device/{eui.lower()}/command/down", orjson.dumps(body))
