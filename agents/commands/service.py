"""Commands: an NGSI-LD update of a command attribute -> the device -> `<cmd>_status` / `<cmd>_info`.

The flow of iotagent-node-lib in NGSI-LD mode (commit d3dcc9f), kept here:

    provisioning   a device's `commands` (its own and its group's) get `<cmd>_status` "UNKNOWN" and
                   `<cmd>_info` " " in its entity (devices-NGSI-LD.js:145 -> devices-NGSI-v2.js:148-165)
    update         an update of `<cmd>` reaches the agent (see agents.commands.northbound for how);
                   `<cmd>_status` becomes PENDING (contextServerUtils.js:79-101)
    to the device  MQTT: PUBLISH on /<apikey>/<device>/cmd (iotagent-json MQTTBinding.js:398);
                   HTTP with an endpoint: POST to it, its answer is the result (HTTPBinding.js:207-290);
                   HTTP without one (polling): queued until the device asks (GET ...?getCmd=1), then
                   `<cmd>_status` DELIVERED (HTTPBinding.js:608-694, 546-557)
    answer         cmdexe (MQTT /<apikey>/<device>/cmdexe, HTTP POST <resource>/commands):
                   `<cmd>_status` OK and `<cmd>_info` the result (commandHandler.js:193-212);
                   a device endpoint that fails: ERROR and the error as info
    timeout        no answer within METROPOLE_AGENT_COMMAND_TIMEOUT seconds: `<cmd>_status` ERROR and
                   `<cmd>_info` "EXPIRED", as commandService.js:87-130 marks an expired command
                   (constants COMMAND_STATUS_ERROR, COMMAND_EXPIRED_MESSAGE)
    LoRaWAN        a downlink encoded by the device's codec, queued at its network server, moved on by
                   the network server's events (agents.commands.lorawan)

Status writes go through the outbox like measures: durable, in order with the
device's measures, delivered to the group's broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from adapters.outbox import Outbox, OutboxItem
from agents.commands.lorawan import LorawanDownlinks
from agents.commands.lorawan import Publish as LorawanPublish
from agents.commands.payloads import CommandPayloadError, command_payload, command_results
from agents.lorawan.provisioning import Broker, ConfError, LorawanConf, codec_of, conf, is_lorawan_device, parse_servers
from agents.mapping.engine import entity_id, merge_config
from agents.messages import Rejected
from agents.metrics import Metrics
from agents.registry import Registry
from agents.registry.lorawan import group_of
from agents.settings import AgentSettings
from models.times import utc_iso
from models.vocabulary import Doc

__all__ = ["DELIVERED", "ERROR", "EXPIRED", "OK", "PENDING", "UNKNOWN", "CommandService", "Device"]

log = logging.getLogger("metropole.agents.commands")

UNKNOWN, PENDING, DELIVERED, OK, ERROR = "UNKNOWN", "PENDING", "DELIVERED", "OK", "ERROR"
EXPIRED = "EXPIRED"  # the info of a command whose time ran out (its status is ERROR)

Publish = Callable[[str, bytes, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Device:
    """A device that takes commands, as the command service needs it."""

    doc: Doc
    group: Doc | None
    service: str
    subservice: str
    device_id: str
    apikey: str
    entity_id: str
    entity_type: str
    broker_url: str | None
    commands: dict[str, Doc]  # by name: the device's own over its group's
    lorawan: LorawanConf | None = None  # a LoRaWAN device's provisioning: its commands are downlinks

    @property
    def protocol(self) -> str:
        text = str(self.doc.get("protocol") or (self.group or {}).get("protocol") or "").lower()
        resource = str((self.group or {}).get("resource") or "")
        return "ul" if "ul" in text.replace("ultralight", "ul") or resource == "/iot/d" else "json"

    @property
    def endpoint(self) -> str | None:
        return self.doc.get("endpoint") or (self.group or {}).get("endpoint") or None

    @property
    def transport(self) -> str:
        return str(self.doc.get("transport") or (self.group or {}).get("transport") or "MQTT").upper()

    @property
    def polling(self) -> bool:
        """HTTP without an endpoint: the device fetches its commands (HTTPBinding.js:546-557)."""
        return self.endpoint is None and self.transport == "HTTP"


def _commands(doc: Doc | None) -> list[Doc]:
    return [c for c in (doc or {}).get("commands") or [] if isinstance(c, dict) and c.get("name")]


def _now_iso() -> str:
    return utc_iso(timespec="microseconds")


class CommandService:
    """Takes command updates, sends them to devices, follows their answers and timeouts."""

    def __init__(self, registry: Registry, outbox: Outbox, settings: AgentSettings, *, metrics: Metrics | None = None,
                 publish: Publish | None = None, http: httpx.AsyncClient | None = None,
                 lorawan_publish: LorawanPublish | None = None) -> None:
        self.registry = registry
        self.outbox = outbox
        self.settings = settings
        self.publish = publish
        self.servers = parse_servers(settings.lorawan_servers)
        self.lorawan = LorawanDownlinks(self, lorawan_publish)
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._own_http = http is None
        self._task: asyncio.Task[None] | None = None
        self._by_entity: dict[str, dict[str, Device]] = {}  # service -> entity id -> device
        self._generation = -1
        self._read_at = 0.0  # another replica's writes are not counted by our registry's generation: re-read
        m = metrics or Metrics()
        self._m_commands = m.counter("metropole_agent_commands_total", "Commands, by outcome", ["status"])

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching timeouts (in the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._expire_forever(), name="agent-commands")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._own_http:
            await self._http.aclose()

    # -- devices ----------------------------------------------------------------------------------

    async def device(self, doc: Doc) -> Device | None:
        """The command view of a registry device document; None when it takes no command."""
        apikey = str(doc.get("apikey") or "")
        groups = await self.registry.groups_by_apikey(apikey) if apikey else []
        group = next((g for g in groups if g.get("service") == doc.get("service")), groups[0] if groups else None)
        lorawan = None
        if is_lorawan_device(doc, group):
            group = await group_of(self.registry, doc)
            try:
                lorawan = conf(doc, group, self.servers)
            except ConfError as exc:
                log.warning("device %s: its LoRaWAN provisioning no longer works (%s): no commands", doc["device_id"],
                            exc)
                return None
        commands = {c["name"]: c for c in _commands(group)}
        commands.update({c["name"]: c for c in _commands(doc)})
        if not commands:
            return None
        cfg = merge_config(doc, group, device_id=str(doc["device_id"]), apikey=apikey or str((group or {}).get("apikey", "")))
        entity_type, eid = cfg.entity_type, cfg.id
        codec = codec_of(lorawan) if lorawan is not None else None
        if codec is not None:  # the entity the codec's uplinks write (agents.ingest_lorawan)
            entity_type, eid = codec.entity_type, entity_id(codec.entity_type, cfg.entity_name)
        return Device(doc, group, cfg.service, cfg.service_path, cfg.device_id, cfg.apikey, eid, entity_type,
                      cfg.broker_url, commands, lorawan)

    async def by_entity(self, service: str, subservice: str | None, entity_id: str) -> Device | None:
        """The device whose entity is `entity_id` in a service (any service path when None)."""
        if self._generation != self.registry.generation or time.monotonic() - self._read_at > 5.0:
            self._by_entity.clear()
            self._generation = self.registry.generation
            self._read_at = time.monotonic()
        devices = self._by_entity.get(service)
        if devices is None:
            devices = {}
            for doc in (await self.registry.list_devices(service, None)).items:
                found = await self.device(doc)
                if found is not None:
                    devices[found.entity_id] = found
            self._by_entity[service] = devices
        found = devices.get(entity_id)
        if found is None or (subservice is not None and found.subservice != subservice):
            return None
        return found

    async def by_key(self, apikey: str, device_id: str) -> Device | None:
        """The device a southbound message names."""
        for doc in await self.registry.devices_by_id(device_id):
            if doc.get("apikey") == apikey:
                return await self.device(doc)
        for group in await self.registry.groups_by_apikey(apikey):
            found = await self.registry.get_device(str(group.get("service", "")), None, device_id)
            if found is not None:
                return await self.device(found)
        return None

    # -- northbound: a command update -------------------------------------------------------------

    async def execute(self, service: str, subservice: str | None, entity_id: str, values: Doc) -> list[str]:
        """Run the commands among `values` (attribute name -> value) on the entity's device; the names run.

        An empty value is no command (iotagent-json HTTPBinding.js:653-661 skips them): the placeholder
        the agent itself writes at provisioning never runs.
        """
        device = await self.by_entity(service, subservice, entity_id)
        if device is None:
            return []
        run = [(n, v) for n, v in values.items() if n in device.commands and v is not None and str(v).strip() != ""]
        for name, value in run:
            await self._run(device, name, value)
        return [n for n, _ in run]

    async def _run(self, device: Device, name: str, value: Any) -> None:
        if device.lorawan is not None:
            await self.lorawan.run(device, name, value)
            return
        now = time.time()
        await self.registry.put_command(device.service, device.subservice, device.device_id, name, value, PENDING,
                                        device.polling, now, now + self.settings.command_timeout)
        await self._status(device, {name: (PENDING, None)})
        self._m_commands.labels(status=PENDING).inc()
        if device.polling:
            log.info("command %s of device %s queued until the device polls", name, device.device_id)
            return
        body, media = command_payload(device.protocol, device.device_id, name, value)
        if device.endpoint is not None:
            await self._push_http(device, name, body, media)
            return
        if self.publish is None:
            await self._finish(device, {name: (ERROR, "no MQTT connection for commands")})
            return
        qos = int((device.commands[name].get("mqtt") or {}).get("qos", 1))
        topic = f"/{device.apikey}/{device.device_id}/cmd"
        try:
            await self.publish(topic, body, qos)
        except ConnectionError as exc:
            # the device may still get it later from its own session: stays PENDING until answered or expired
            log.warning("command %s of device %s not published on %s: %s", name, device.device_id, topic, exc)
            return
        log.info("command %s sent to device %s on %s", name, device.device_id, topic)

    async def _push_http(self, device: Device, name: str, body: bytes, media: str) -> None:
        headers = {"fiware-service": device.service, "fiware-servicepath": device.subservice, "content-type": media}
        try:
            response = await self._http.post(str(device.endpoint), content=body, headers=headers)
        except httpx.HTTPError as exc:
            await self._finish(device, {name: (ERROR, f"{type(exc).__name__}: {exc}")})
            return
        if response.status_code not in (200, 201):
            await self._finish(device, {name: (ERROR, f"the device answered {response.status_code}: {response.text[:500]}")})
            return
        try:
            results = command_results(device.protocol, device.device_id, response.content)
        except CommandPayloadError:
            results = {name: response.text}
        await self._finish(device, {n: (OK, r) for n, r in results.items() if n in device.commands} or {name: (OK, response.text)})

    # -- southbound: answers and polling ----------------------------------------------------------

    async def lorawan_event(self, network: str, event: str, body: bytes) -> None:
        """A LoRaWAN network server's downlink event (MQTT or webhook); never raises."""
        try:
            await self.lorawan.event(network, event, body)
        except Exception:  # a store fault: the command stays as it was, and expires if nothing else comes
            log.exception("a %s %s downlink event could not be taken", network, event)

    async def lorawan_connected(self, broker: Broker) -> None:
        """A network server link (re)connected: its waiting downlinks go now; never raises."""
        try:
            await self.lorawan.resend(broker)
        except Exception:
            log.exception("downlinks waiting for %s could not be queued", broker)

    async def result(self, apikey: str, device_id: str, protocol: str, payload: bytes) -> Rejected | None:
        """A device's cmdexe; a Rejected (logged) when it cannot be taken."""
        device = await self.by_key(apikey, device_id)
        if device is None:
            return self._refused("unknown_device", f"no device {device_id!r} with commands for apikey {apikey!r}")
        try:
            results = command_results(protocol if protocol in ("json", "ul") else device.protocol, device_id, payload)
        except CommandPayloadError as exc:
            return self._refused("malformed_payload", str(exc))
        known = {n: (OK, r) for n, r in results.items() if n in device.commands}
        if not known:
            return self._refused("malformed_payload", f"no command of device {device_id!r} among {sorted(results)}")
        await self._finish(device, known)
        return None

    async def poll(self, apikey: str, device_id: str, protocol: str) -> tuple[bytes, str] | None:
        """A polling device's pending commands as one body (marked DELIVERED); None when there are none."""
        device = await self.by_key(apikey, device_id)
        if device is None:
            return None
        pending = await self.registry.commands_of(device.service, device.subservice, device.device_id, PENDING)
        pending = [c for c in pending if c["polling"]]
        if not pending:
            return None
        for c in pending:
            await self.registry.set_command_status(device.service, device.subservice, device.device_id, c["name"],
                                                   DELIVERED)
        await self._status(device, {c["name"]: (DELIVERED, None) for c in pending})
        self._m_commands.labels(status=DELIVERED).inc(len(pending))
        if protocol == "ul":
            body = b"\n".join(command_payload("ul", device_id, c["name"], c["value"])[0] for c in pending)
            return body, "text/plain"
        return orjson.dumps({c["name"]: c["value"] for c in pending}), "application/json"

    # -- outcomes ---------------------------------------------------------------------------------

    async def _finish(self, device: Device, outcomes: dict[str, tuple[str, Any]]) -> None:
        for name, (status, _) in outcomes.items():
            await self.registry.remove_command(device.service, device.subservice, device.device_id, name)
            self._m_commands.labels(status=status).inc()
        await self._status(device, outcomes)

    async def _status(self, device: Device, outcomes: dict[str, tuple[str, Any]]) -> None:
        """Write `<cmd>_status` (and `<cmd>_info` when given) to the device's entity, through the outbox."""
        now = _now_iso()
        entity: Doc = {"id": device.entity_id, "type": device.entity_type}
        for name, (status, info) in outcomes.items():
            entity[f"{name}_status"] = {"type": "Property", "value": status, "observedAt": now}
            if info is not None:
                entity[f"{name}_info"] = {"type": "Property", "value": info, "observedAt": now}
        await self._append(device, entity)

    async def initial(self, device: Device, *, command_attributes: bool = True) -> None:
        """The command attributes a newly provisioned device's entity starts with (node-lib: UNKNOWN, " ").

        `command_attributes=False` (commands by registration) leaves `<cmd>` itself out, as node-lib's
        registration mode does: the agent's exclusive registration provides it, and a broker refuses an
        exclusive registration over an attribute the entity already holds (clause 5.9.2.4: 409 Conflict),
        which made the registration depend on whether this write or the registration came first."""
        entity: Doc = {"id": device.entity_id, "type": device.entity_type}
        for name in device.commands:
            if command_attributes:  # by subscription: the broker holds <cmd>, and the subscription watches it
                entity[name] = {"type": "Property", "value": ""}
            entity[f"{name}_status"] = {"type": "Property", "value": UNKNOWN}
            entity[f"{name}_info"] = {"type": "Property", "value": " "}
        await self._append(device, entity)

    async def _append(self, device: Device, entity: Doc) -> None:
        item = OutboxItem(device.broker_url or "", device.service, tuple(self.settings.contexts),
                          f"{device.service}|{device.apikey}|{device.device_id}", entity, time.time(),
                          device.subservice)
        await asyncio.to_thread(self.outbox.append, [item])

    def _refused(self, reason: str, detail: str) -> Rejected:
        log.warning("command answer refused: %s: %s", reason, detail)
        return Rejected(reason, detail)

    # -- timeouts ---------------------------------------------------------------------------------

    async def expire(self, now: float | None = None) -> int:
        """Mark the commands whose time ran out ERROR / EXPIRED; how many."""
        expired = await self.registry.expired_commands(time.time() if now is None else now)
        for row in expired:
            found = await self.registry.get_device(row["service"], row["subservice"], row["device_id"])
            device = await self.device(found) if found is not None else None
            if device is None:
                await self.registry.remove_command(row["service"], row["subservice"], row["device_id"], row["name"])
                continue
            log.warning("command %s of device %s expired", row["name"], device.device_id)
            await self._finish(device, {row["name"]: (ERROR, EXPIRED)})
        return len(expired)

    async def _expire_forever(self) -> None:
        period = max(0.2, min(1.0, self.settings.command_timeout / 4))
        while True:
            try:
                await self.expire()
            except Exception:  # never let a store hiccup stop the watch
                log.exception("command expiry failed")
            await asyncio.sleep(period)
