"""The MQTT southbound transport (paho-mqtt 2.x), topics of iotagent-json and iotagent-ul.

    /<apikey>/<device_id>/attrs              JSON object or array (multi-measure)
    /<apikey>/<device_id>/attrs/<attr>       one attribute's value
    /json/<apikey>/<device_id>/attrs[/<attr>]
    /ul/<apikey>/<device_id>/attrs[/<attr>]  Ultralight 2.0 (`t|21.5|h|40`, `#` between groups)

Unlike the FIWARE agents (QoS 0), the agent subscribes at QoS 1 with a
persistent session (MQTT 5 `clean_start=False` and a session expiry; 3.1.1
`clean_session=False`) and acknowledges manually (`manual_ack=True`): the
PUBACK leaves only once the intake has committed the measure to the outbox.
A crash before that makes the broker send the message again when the agent
reconnects with the same client id.

Several replicas share the load with a shared subscription
(`$share/<group>/<topic>`): the broker gives each message to one of them.
The price is that two measures of one device may then reach two replicas and
be delivered out of order; a single replica (the default) keeps device order.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agents.messages import Inbound
from agents.metrics import Metrics
from agents.transports.intake import Intake

__all__ = ["MEASURE_TOPICS", "MqttOptions", "MqttTransport", "parse_topic"]

log = logging.getLogger("metropole.agents.mqtt")

MEASURE_TOPICS: tuple[str, ...] = (
    "/+/+/attrs",
    "/+/+/attrs/+",
    "/json/+/+/attrs",
    "/json/+/+/attrs/+",
    "/ul/+/+/attrs",
    "/ul/+/+/attrs/+",
)
_PROTOCOLS = {"json": "json", "ul": "ul"}


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Where and how the agent subscribes."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "metropole-agent"
    share_group: str = ""  # "" = plain subscriptions; else $share/<group>/...
    protocol: int = 5  # 5 or 4 (3.1.1, for brokers without MQTT 5)
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600  # seconds the broker keeps our session (and queued QoS 1 messages)
    receive_maximum: int = 1000  # unacknowledged QoS 1 messages the broker may have in flight to us
    username: str | None = None
    password: str | None = None


def parse_topic(topic: str) -> tuple[str, str, str, str | None] | None:
    """(protocol, apikey, device_id, attribute) of a measure topic, None when it is not one.

    The protocol is "json" or "ul" for prefixed topics, "" for `/<apikey>/<device_id>/attrs...`.
    """
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "":
        return None
    protocol = ""  # no prefix: told from the payload (see _sniff)
    if parts[1] in _PROTOCOLS and len(parts) >= 5 and parts[4] == "attrs":
        protocol = _PROTOCOLS[parts[1]]
        parts = parts[1:]
    if parts[3] != "attrs" or not parts[1] or not parts[2]:
        return None
    if len(parts) == 4:
        return protocol, parts[1], parts[2], None
    if len(parts) == 5 and parts[4]:
        return protocol, parts[1], parts[2], parts[4]
    return None


def _sniff(payload: bytes) -> str:
    """Protocol of a message on an unprefixed topic (both FIWARE agents use `/<apikey>/<id>/attrs`).

    A JSON object or array is iotagent-json's; anything else with a `|` is
    Ultralight 2.0; a bare value (single-attribute topics) reads the same in both.
    """
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        return "json"
    return "ul" if b"|" in payload else "json"


_second: tuple[int, str] = (-1, "")  # (a UTC second, its "YYYY-MM-DDTHH:MM:SS"), rebound as a whole


def _now() -> str:
    """The UTC time with microseconds, as `2026-11-26T07:05:00.123456Z`; formats the date once a second."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}Z"


class MqttTransport:
    """Subscribes to the measure topics and hands each message to the intake."""

    def __init__(self, options: MqttOptions, intake: Intake, *, metrics: Metrics | None = None) -> None:
        self.options = options
        self._intake = intake
        self.connected = threading.Event()
        m = metrics or Metrics()
        self._m_messages = m.counter("metropole_agent_mqtt_messages_total", "MQTT messages received, by QoS", ["qos"])
        self._m_ignored = m.counter("metropole_agent_mqtt_ignored_total", "MQTT messages on topics that are not measures")
        self._m_connected = m.gauge("metropole_agent_mqtt_connected", "1 while connected to the MQTT broker")
        v5 = options.protocol == 5
        self._v5 = v5
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if options.username:
            self.client.username_pw_set(options.username, options.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def topics(self) -> list[str]:
        """The subscription filters, with the shared-subscription prefix when configured."""
        prefix = f"$share/{self.options.share_group}/" if self.options.share_group else ""
        return [prefix + t for t in MEASURE_TOPICS]

    def start(self) -> None:
        """Connect (retrying in the background until the broker answers) and start paho's thread."""
        props: Properties | None = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry
            props.ReceiveMaximum = self.options.receive_maximum
        kwargs: dict[str, Any] = {"clean_start": False, "properties": props} if self._v5 else {}
        self.client.connect_async(self.options.host, self.options.port, self.options.keepalive, **kwargs)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect; unacknowledged messages stay with the broker for the next session."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.connected.clear()
            self._m_connected.set(0)

    # -- paho callbacks (paho's network thread) ----------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.options.host, self.options.port, reason)
            return
        log.info("connected to MQTT broker %s:%s (session present: %s)", self.options.host, self.options.port,
                 getattr(flags, "session_present", None))
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe([(t, 1) for t in self.topics()])
        self.connected.set()
        self._m_connected.set(1)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self._m_connected.set(0)
        if reason is not None and getattr(reason, "value", 0):
            log.warning("disconnected from MQTT broker: %s (paho reconnects)", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        qos, mid = message.qos, message.mid
        self._m_messages.labels(qos=qos).inc()
        parsed = parse_topic(message.topic)
        if parsed is None:
            self._m_ignored.inc()
            client.ack(mid, qos)
            return
        protocol, apikey, device_id, attribute = parsed
        protocol = protocol or _sniff(message.payload)
        inbound = Inbound(
            transport="mqtt",
            protocol=protocol,
            apikey=apikey,
            device_id=device_id,
            payload=bytes(message.payload),
            received_at=_now(),
            attribute=attribute,
            topic=message.topic,
        )

        def done(ok: bool) -> None:
            if ok:  # not ok: no PUBACK, the broker sends it again on the next session
                client.ack(mid, qos)

        self._intake.submit(inbound, done)
