"""The Things Stack v3: uplinks from its MQTT server or a webhook, downlinks to its MQTT server.

Formats as The Things Stack documents them ("Data Formats", "MQTT Server",
thethingsindustries.com/docs/integrations/): an uplink is published on
`v3/{application id}@{tenant id}/devices/{device id}/up` (open source
deployments: `v3/{application id}/devices/{device id}/up`), and a webhook
POSTs the same JSON:

    end_device_ids {device_id, application_ids {application_id}, dev_eui, ...}
    received_at
    uplink_message {f_port, f_cnt, frm_payload (base64), decoded_payload?, rx_metadata [{gateway_ids
                    {gateway_id, eui}, rssi, channel_rssi, snr, time}], settings, received_at}

"Empty fields are omitted" (the same document): an absent f_port or f_cnt is 0.
A downlink is `{"downlinks": [{f_port, frm_payload, priority, confirmed}]}` on
`.../down/push` (or `.../down/replace`).
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

_UPLINK_TOPIC = re.compile(r"^v3/(?P<app>[^/@+#]+)(?:@(?P<tenant>[^/+#]+))?/devices/(?P<dev>[^/+#]+)/up$")
PRIORITIES = ("LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST")


def subscription(application: str, tenant: str | None = None) -> str:
    """The MQTT filter of every uplink of an application."""
    return f"v3/{_app(application, tenant)}/devices/+/up"


def _app(application: str, tenant: str | None) -> str:
    return f"{application}@{tenant}" if tenant else application


def topic_ids(topic: str) -> tuple[str, str | None, str]:
    """(application id, tenant id or None, device id) of an uplink topic."""
    m = _UPLINK_TOPIC.match(topic)
    if m is None:
        raise EnvelopeError(f"{topic!r} is not a The Things Stack uplink topic (v3/<app>[@<tenant>]/devices/<dev>/up)")
    return m["app"], m["tenant"], m["dev"]


def parse_uplink(body: bytes | str | Mapping[str, Any], topic: str | None = None) -> Uplink:
    """An uplink message (MQTT payload or webhook body); the topic, when given, must name the same device."""
    doc = json_object(body, "the uplink message")
    ids = doc.get("end_device_ids")
    if not isinstance(ids, Mapping):
        raise EnvelopeError("no end_device_ids: not a The Things Stack message")
    up = doc.get("uplink_message")
    if not isinstance(up, Mapping):
        kinds = [k for k in doc if k not in ("end_device_ids", "correlation_ids", "received_at")]
        raise EnvelopeError(f"not an uplink message (it carries {', '.join(kinds) or 'nothing'})")
    device_name = ids.get("device_id") if isinstance(ids.get("device_id"), str) else None
    app_ids = ids.get("application_ids")
    application = app_ids.get("application_id") if isinstance(app_ids, Mapping) else None
    tenant = None
    if topic is not None:
        t_app, tenant, t_dev = topic_ids(topic)
        if (device_name, application) != (t_dev, t_app):
            raise EnvelopeError(f"the topic names device {t_app}/{t_dev}, the message {application}/{device_name}")
    return Uplink(
        network="tts",
        dev_eui=dev_eui(ids.get("dev_eui"), "end_device_ids.dev_eui"),
        device_name=device_name,
        application=application if isinstance(application, str) else None,
        tenant=tenant,
        fport=integer(up.get("f_port"), "uplink_message.f_port", 0, 255, default=0) or 0,
        payload=b64decode(up.get("frm_payload"), "uplink_message.frm_payload"),
        fcnt=integer(up.get("f_cnt"), "uplink_message.f_cnt", 0, 2**32 - 1, default=0),
        decoded=dict(up["decoded_payload"]) if isinstance(up.get("decoded_payload"), Mapping) else None,
        received_at=timestamp(doc.get("received_at") or up.get("received_at"), "received_at"),
        gateways=tuple(_gateway(rx) for rx in records(up.get("rx_metadata"), "uplink_message.rx_metadata")),
    )


def _gateway(rx: Mapping[str, Any]) -> Gateway:
    gw = rx.get("gateway_ids")
    gid = (gw.get("gateway_id") or gw.get("eui")) if isinstance(gw, Mapping) else None
    return Gateway(str(gid) if gid else "", number(rx.get("rssi", rx.get("channel_rssi"))), number(rx.get("snr")))


def downlink(application: str, tenant: str | None, device_id: str, fport: int, payload: bytes, *,
             confirmed: bool = False, priority: str = "NORMAL", replace: bool = False,
             correlation_id: str | None = None) -> Downlink:
    """The MQTT message that queues one downlink (push, or replace the queue).

    A `correlation_id` goes into the downlink's `correlation_ids`, which the network server's
    events about it (`down/sent`, `down/ack` ...) carry back ("Data Formats", downlink messages).
    """
    if not 1 <= fport <= 223:
        raise EnvelopeError(f"a downlink FPort is 1..223, not {fport}")
    if priority not in PRIORITIES:
        raise EnvelopeError(f"priority must be one of {', '.join(PRIORITIES)}")
    item: dict[str, Any] = {"f_port": fport, "frm_payload": b64encode(payload), "priority": priority}
    if confirmed:
        item["confirmed"] = True
    if correlation_id is not None:
        item["correlation_ids"] = [correlation_id]
    topic = f"v3/{_app(application, tenant)}/devices/{device_id}/down/{'replace' if replace else 'push'}"
    return Downlink(topic, orjson.dumps({"downlinks": [item]}))
