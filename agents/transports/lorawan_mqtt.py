"""LoRaWAN network servers over MQTT: one connection per network-server broker, the topics provisioning names.

A network server's MQTT integration is its own broker with its own
credentials (The Things Stack: username `{app}@{tenant}`, password an API key;
ChirpStack: whatever its Mosquitto asks), not the devices' Mosquitto. So the
agent keeps a connection (a :class:`NetworkServerLink`, the agent's own MQTT
client) per distinct broker and credentials that provisioning names
(`internal_attributes.lorawan.application_server`, on groups and devices), and
subscribes there to each provisioned application's topics:

    The Things Stack  v3/{app}[@{tenant}]/devices/+/up                  uplinks
                      v3/{app}[@{tenant}]/devices/+/down/{sent,ack,nack,failed}   downlink events
    ChirpStack        application/{id}/device/+/event/{up,ack,txack}

(IoTagent-LoRaWAN subscribes to the same uplink filters: ttnAppService.js
observeAllDevices, chirpstackAppService.js:177-180.) Uplinks go to the intake
as `lorawan-tts` / `lorawan-chirpstack` messages, acknowledged once durable as
any MQTT measure; downlink events go to the command service. The Things
Stack's MQTT server speaks MQTT 3.1.1 at QoS 0 only (its "MQTT Server" page):
its filters are asked at QoS 0, and every link speaks 3.1.1.

:class:`NetworkServers` reconciles the links with the registry: at start,
after each provisioning write (hooks), and every `refresh` seconds for what
other replicas provision. A link whose filters change is reconnected with the
new set (its session, and what the broker queued for it, kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agents.lorawan.provisioning import Broker, ConfError, LorawanConf, conf, section
from agents.messages import Inbound
from agents.metrics import Metrics
from agents.registry import Registry
from agents.registry.lorawan import pick_group
from agents.transports.intake import Intake
from agents.transports.mqtt import MqttOptions, MqttTransport, _Connection, _now

__all__ = ["NetworkServerLink", "NetworkServers", "filters_of", "route"]

log = logging.getLogger("metropole.agents.lorawan")

#: (network, event, body) -> awaitable: a downlink event for the command service
Events = Callable[[str, str, bytes], Awaitable[None]]
#: (broker) -> awaitable: a link (re)connected, downlinks waiting for it may go
Connected = Callable[[Broker], Awaitable[None]]
TTS_EVENTS = ("sent", "ack", "nack", "failed")
CHIRPSTACK_EVENTS = ("ack", "txack")


def filters_of(found: LorawanConf) -> tuple[str, ...]:
    """The topic filters of a provisioned application: its uplinks and its downlink events."""
    if found.network == "tts":
        base = f"v3/{found.tts_application}/devices/+"
        return (f"{base}/up", *(f"{base}/down/{e}" for e in TTS_EVENTS))
    base = f"application/{found.application_id}/device/+/event"
    return (f"{base}/up", *(f"{base}/{e}" for e in CHIRPSTACK_EVENTS))


def route(topic: str) -> tuple[str, str] | None:
    """(network, "up" or the downlink event) of a network server topic; None for any other topic."""
    parts = topic.split("/")
    if parts[0] == "v3" and len(parts) >= 5 and parts[2] == "devices":
        if len(parts) == 5 and parts[4] == "up":
            return "tts", "up"
        if len(parts) == 6 and parts[4] == "down" and parts[5] in TTS_EVENTS:
            return "tts", parts[5]
    elif (parts[0] == "application" and len(parts) == 6 and parts[2] == "device" and parts[4] == "event"
          and (parts[5] == "up" or parts[5] in CHIRPSTACK_EVENTS)):
        return "chirpstack", parts[5]
    return None


class NetworkServerLink(MqttTransport):
    """The agent's MQTT client on one network server's broker, subscribed to its provisioned applications."""

    def __init__(self, broker: Broker, filters: tuple[str, ...], intake: Intake, *, client_id: str,
                 share_group: str = "", session_expiry: int = 7 * 24 * 3600, max_message_bytes: int = 0,
                 metrics: Metrics | None = None, events: Events | None = None,
                 connected: Connected | None = None) -> None:
        options = MqttOptions(host=broker.host, port=broker.port, client_id=client_id, share_group=share_group,
                              protocol=4, session_expiry=session_expiry, username=broker.username,
                              password=broker.password, max_message_bytes=max_message_bytes,
                              # a network server's certificate is checked against the system's CAs
                              tls=ssl.create_default_context() if broker.tls else None)
        # the base class's counters are per process; its "connected" gauge is the devices' Mosquitto's alone
        super().__init__(options, intake, metrics=Metrics())
        self.broker = broker
        self.filters = filters
        self._events = events
        self._on_connected = connected
        self._m_link = (metrics or Metrics()).gauge(
            "metropole_agent_lorawan_links_connected", "1 while connected to a LoRaWAN network server's broker",
            ["server"]).labels(server=str(broker))

    async def aclose(self) -> None:
        """Disconnect for good (a link is not reopened: a new one replaces it)."""
        await super().aclose()
        self._intake.off_commit(self._resume)

    def topics(self) -> list[str]:
        prefix = f"$share/{self.options.share_group}/" if self.options.share_group else ""
        return [prefix + f for f in self.filters]

    def topic_qos(self, topic: str) -> int:
        return 0 if "v3/" in topic else 1  # The Things Stack: "MQTT 3.1.1 and QoS 0 only"

    def _set_connected(self, up: bool) -> None:
        was = self.connected.is_set()
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        self._m_link.set(1 if up else 0)
        if up and not was and self._on_connected is not None and self._loop is not None:
            asyncio.ensure_future(self._on_connected(self.broker), loop=self._loop)

    def _on_publish(self, conn: _Connection, topic: bytes, qos: int, mid: int, payload: bytes, size: int = -1,
                    key: tuple[int, bytes, int] | None = None) -> None:
        done = self._ack(conn, qos, mid, topic, payload, key)
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            text = ""
        kind = route(text)
        if kind is None:
            self._m_ignored.inc()
            done(True)
            return
        network, event = kind
        if event == "up":
            self._intake.submit(Inbound("mqtt", f"lorawan-{network}", "", "", payload, _now(), None, text, size), done)
            return
        if self._events is None or size >= 0:
            done(True)
            return
        task = asyncio.ensure_future(self._events(network, event, payload))
        task.add_done_callback(lambda t: done(not t.cancelled() and t.exception() is None))


class NetworkServers:
    """The links to every network server broker provisioning names, kept in step with the registry."""

    def __init__(self, registry: Registry, intake: Intake, servers: Mapping[str, Mapping[str, Any]], *,
                 client_id: str, share_group: str = "", session_expiry: int = 7 * 24 * 3600,
                 max_message_bytes: int = 0, metrics: Metrics | None = None, events: Events | None = None,
                 connected: Connected | None = None, refresh: float = 10.0) -> None:
        self.registry = registry
        self.intake = intake
        self.servers = servers
        self.links: dict[Broker, NetworkServerLink] = {}
        self._kw: dict[str, Any] = {"share_group": share_group, "session_expiry": session_expiry,
                                    "max_message_bytes": max_message_bytes, "metrics": metrics, "events": events,
                                    "connected": connected}
        self._client_id = client_id
        self._refresh = refresh
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect to what the registry provisions now, and follow it."""
        await self.reconcile()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="agent-lorawan-links")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for link in self.links.values():
            await link.aclose()
        self.links.clear()

    async def changed(self, _old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Provisioning hook: a LoRaWAN group or device was written."""
        if section(_old) is not None or section(new) is not None:
            await self.reconcile()

    async def publish(self, broker: Broker, topic: str, body: bytes, qos: int) -> None:
        """Publish a downlink on a network server's broker; ConnectionError when not connected to it."""
        link = self.links.get(broker)
        if link is None:
            raise ConnectionError(f"no connection to {broker}")
        await link.publish(topic, body, qos)

    async def wanted(self) -> dict[Broker, tuple[str, ...]]:
        """Every broker provisioning names, with the filters of its applications (sorted)."""
        groups = await self.registry.all_groups()
        found: list[LorawanConf] = []
        for group in groups:
            if section(group) is not None:
                try:
                    found.append(conf(None, group, self.servers, is_device=False))
                except ConfError:
                    pass  # refused at provisioning: only a setting gone away since gets here
        for device in await self.registry.lorawan_devices():
            try:
                found.append(conf(device, pick_group(device, groups), self.servers))
            except ConfError:
                pass
        out: dict[Broker, set[str]] = {}
        for f in found:
            if f.broker is not None:
                out.setdefault(f.broker, set()).update(filters_of(f))
        return {broker: tuple(sorted(filters)) for broker, filters in out.items()}

    async def reconcile(self) -> None:
        """Start, restart (new filters) or stop links to match the registry."""
        async with self._lock:
            wanted = await self.wanted()
            for broker in [b for b in self.links if b not in wanted or self.links[b].filters != wanted[b]]:
                await self.links.pop(broker).aclose()
                log.info("lorawan: left network server %s", broker)
            for broker, filters in wanted.items():
                if broker not in self.links:
                    link = NetworkServerLink(broker, filters, self.intake, client_id=self._link_id(broker), **self._kw)
                    self.links[broker] = link
                    link.start()
                    log.info("lorawan: listening to %d topics on network server %s", len(filters), broker)

    def _link_id(self, broker: Broker) -> str:
        """A client id per installation and broker, stable across restarts (the link's session is kept)."""
        digest = hashlib.sha256(f"{broker.host}:{broker.port}:{broker.username}".encode()).hexdigest()[:10]
        return f"{self._client_id}-lora-{digest}"

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.reconcile()
            except Exception:  # a store hiccup: the links stay as they are until the next round
                log.exception("lorawan: could not read the provisioned network servers")
