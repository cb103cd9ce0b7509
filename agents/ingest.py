"""The agent core: one southbound message in, the NGSI-LD updates to deliver out.

    updates = await Ingestor(registry, metrics, settings).ingest(inbound)

`ingest` (and `process`, which says what became of the message as an
`Outcome`) raises nothing. Bad input (malformed payload, unknown apikey or
device, a failing expression, a message over the limits) is rejected whole:
logged with device, topic and reason, counted per reason, kept as a dead
letter, and `[]` is returned. A value its attribute cannot take (wrong type,
too long) is refused alone, as iotagent-node-lib refuses it: the message's
other attributes are kept, and the refused one is recorded (reason, the
attribute, why) and counted in `metropole_agent_attributes_rejected_total`.
A multi-measure payload gives one update per entity per measure group, in
order.

The ingestor caches the configuration of each (apikey, device, resource) it
has looked up, so a known device costs no registry round trip. An entry is
dropped as soon as anything writes groups or devices through the same
registry object (the provisioning API shares it: see `Registry.generation`),
and after `config_ttl` seconds in any case, for writes made by another
process sharing the store (PostgreSQL with several agents).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from agents.codecs import CodecError, ultralight
from agents.codecs import json as json_codec
from agents.ingest_lorawan import LorawanIngest
from agents.lorawan.provisioning import parse_servers
from agents.mapping.engine import DeviceConfig, entity_id, map_measure, merge_config
from agents.mapping.jexl import JexlError, evaluate
from agents.mapping.timestamps import shifted
from agents.messages import EntityUpdate, Inbound, Outcome, Rejected
from agents.metrics import Metrics
from agents.protocols import decoder_for
from agents.registry import DeadLetter, Duplicate, Registry
from agents.settings import AgentSettings, origin

__all__ = ["Ingestor"]

log = logging.getLogger("metropole.agents")

Doc = dict[str, Any]


_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def _nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def autoprovisionable(device_id: str) -> bool:
    """Whether a device id may name a device created on its first measure (issue 17: `#`, `+` and
    `../../etc/passwd` were autoprovisioned as they were). MQTT wildcards, path separators, `..`, spaces and
    control characters are refused; a device with such an id can still be provisioned explicitly."""
    return _DEVICE_ID.fullmatch(device_id) is not None and ".." not in device_id


def _mark_status(updates: list[EntityUpdate], cfg: DeviceConfig) -> list[EntityUpdate]:
    """Mark the device's own Device entity (a profile adds it to every measure) as a status update.

    Never the entity the measures themselves go to (a device provisioned with that very id keeps every update).
    """
    status_id = entity_id("Device", cfg.device_id)
    if cfg.id == status_id or not any(u.entity.get("id") == status_id and u.entity.get("type") == "Device" for u in updates):
        return updates
    return [u._replace(status=True) if u.entity.get("id") == status_id and u.entity.get("type") == "Device" else u
            for u in updates]


class Ingestor:
    #: entries kept at most; beyond, the cache starts again empty
    config_cache_max = 100_000

    def __init__(self, registry: Registry, metrics: Metrics, settings: AgentSettings | None = None, *,
                 config_ttl: float = 5.0, allowed_cbrokers: frozenset[str] | None = None) -> None:
        self.registry = registry
        self.allowed_cbrokers = allowed_cbrokers  # origins a group's cbroker may name (None: any)
        self.settings = settings or AgentSettings()
        self.config_ttl = config_ttl
        self.lorawan = LorawanIngest(registry, metrics, self.settings, parse_servers(self.settings.lorawan_servers),
                                     config_ttl=config_ttl)
        # (apikey, device_id, resource) -> (expires at, config); valid for registry generation _cache_generation
        self._configs: dict[tuple[str, str, str], tuple[float, DeviceConfig]] = {}
        self._cache_generation = -1
        self._children: dict[tuple[Any, ...], Any] = {}
        self.received = metrics.counter(
            "metropole_agent_messages_received_total", "Southbound messages received", ["transport", "protocol"]
        )
        self.accepted = metrics.counter(
            "metropole_agent_messages_accepted_total", "Southbound messages mapped to entity updates",
            ["transport", "protocol"],
        )
        self.rejected = metrics.counter(
            "metropole_agent_messages_rejected_total", "Southbound messages rejected, by reason", ["reason"]
        )
        self.updates = metrics.counter(
            "metropole_agent_entity_updates_total", "Entity updates produced for the broker", ["protocol"]
        )
        self.attributes_rejected = metrics.counter(
            "metropole_agent_attributes_rejected_total",
            "Attributes refused while the rest of their message was kept, by reason", ["reason"],
        )

    async def ingest(self, msg: Inbound) -> list[EntityUpdate]:
        """The updates a message gives; [] (and a recorded rejection) for bad input."""
        return (await self.process(msg)).updates

    async def process(self, msg: Inbound) -> Outcome:
        """What becomes of a message: its updates, or the rejection of it, and the attributes refused."""
        self._child("received", msg.transport, msg.protocol).inc()
        cfg: DeviceConfig | None = None
        dropped: list[Rejected] = []
        try:
            self._check_size(msg)
            if "\x00" in msg.device_id or "\x00" in msg.apikey:  # PostgreSQL cannot even look such a name up
                raise Rejected("invalid_device_id", "the device id or apikey holds a NUL character (U+0000)")
            if msg.protocol.startswith("lorawan"):
                updates, cfg = await self.lorawan.updates(msg, dropped)
            else:
                measures = self._decode(msg)
                cfg = self._cached_config(msg)
                if cfg is None:
                    cfg = await self._config(msg, measures[0])
                updates = []
                contexts = self.settings.contexts
                max_length = self.settings.max_value_length
                for index, measure in enumerate(measures):
                    received_at = msg.received_at if index == 0 else shifted(msg.received_at, index)
                    for entity in map_measure(cfg, measure, received_at, dropped, max_length):
                        updates.append(EntityUpdate(
                            tenant=cfg.service, service_path=cfg.service_path, broker_url=cfg.broker_url,
                            entity=entity, context=list(contexts), device_id=msg.device_id, apikey=msg.apikey,
                        ))
            if (cfg is not None and cfg.broker_url and self.allowed_cbrokers is not None
                    and origin(cfg.broker_url) not in self.allowed_cbrokers):
                raise Rejected("cbroker_not_allowed", f"the group's cbroker {cfg.broker_url[:200]!r} is not a broker "
                               "this agent may post device data to (METROPOLE_AGENT_CBROKER_ALLOWED)",
                               device_id=cfg.device_id)
            if dropped and not updates:
                # Every value was refused: the message as a whole says nothing the broker can take.
                reason = dropped[0].reason
                raise Rejected(reason, "every attribute was refused: " + "; ".join(d.detail for d in dropped),
                               device_id=cfg.device_id)
        except Rejected as rejection:
            await self._record(msg, rejection, cfg)
            return Outcome([], rejection)
        except Exception as exc:  # never crash a transport: an internal fault is a rejection too
            log.exception("agent: internal error on %s", msg.topic)
            fault = Rejected("internal_error", f"{type(exc).__name__}: {exc}")
            await self._record(msg, fault, cfg)
            return Outcome([], fault)
        if cfg is not None and updates:
            updates = _mark_status(updates, cfg)
        self._child("accepted", msg.transport, msg.protocol).inc()
        self._child("updates", msg.protocol).inc(len(updates))
        if dropped:
            for refused in dropped:
                self.attributes_rejected.labels(reason=refused.reason).inc()
                await self._record(msg, refused, cfg, counted=False)
            return Outcome(updates, None, tuple(dropped))
        return Outcome(updates)

    def _check_size(self, msg: Inbound) -> None:
        """Refuse a message over the size limit before anything reads it."""
        size = msg.size if msg.size >= 0 else len(msg.payload)
        limit = self.settings.max_message_bytes
        if limit and size > limit:
            raise Rejected("too_large", f"a message of {size} bytes, over the limit of {limit}"
                           " (METROPOLE_AGENT_MAX_MESSAGE_BYTES)")

    def _child(self, *key: str) -> Any:
        """The labelled child of a counter, made once per label values."""
        child = self._children.get(key)
        if child is None:
            name = key[0]
            if name == "updates":
                child = self.updates.labels(protocol=key[1])
            else:
                child = getattr(self, name).labels(transport=key[1], protocol=key[2])
            self._children[key] = child
        return child

    def _cached_config(self, msg: Inbound) -> DeviceConfig | None:
        """The configuration cached for this device, None when there is none still valid."""
        if self._cache_generation != self.registry.generation:
            self._configs.clear()
            return None
        entry = self._configs.get((msg.apikey, msg.device_id, self._resource(msg.protocol)))
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._configs[(msg.apikey, msg.device_id, self._resource(msg.protocol))]
            return None
        return entry[1]

    def _decode(self, msg: Inbound) -> list[Doc]:
        try:
            if msg.attribute:
                codec = ultralight if msg.protocol.lower() in ("ul", "ultralight") else json_codec
                return [{msg.attribute: codec.decode_value(msg.payload)}]
            measures = decoder_for(msg.protocol)(msg.payload)
        except CodecError as exc:
            raise Rejected("malformed_payload", str(exc)) from None
        limit = self.settings.max_attributes
        if limit and (len(measures) > limit or sum(len(m) for m in measures) > limit):
            raise Rejected("too_many_attributes", f"{sum(len(m) for m in measures)} values in one message, over the"
                           f" limit of {limit} (METROPOLE_AGENT_MAX_ATTRIBUTES)")
        return measures

    def _resource(self, protocol: str) -> str:
        return self.settings.default_resource_ul if protocol.lower() in ("ul", "ultralight") else self.settings.default_resource_json

    async def _config(self, msg: Inbound, first: Doc) -> DeviceConfig:
        """Look the device up in the registry (autoprovisioning it if allowed) and cache its configuration."""
        generation = self.registry.generation
        autoprovisioned = False
        groups = await self.registry.groups_by_apikey(msg.apikey)
        resource = self._resource(msg.protocol)
        group = next((g for g in groups if g.get("resource") == resource), groups[0] if groups else None)
        candidates = await self.registry.devices_by_id(msg.device_id)
        device = next((d for d in candidates if d.get("apikey") == msg.apikey), None)
        if device is None and group is not None:
            device = next(
                (d for d in candidates if not d.get("apikey") and d.get("service") == group.get("service")
                 and d.get("service_path") == group.get("subservice")),
                None,
            )
        if group is None and device is None:
            raise Rejected("unknown_apikey", f"no service group nor device has apikey {msg.apikey!r}")
        if device is None:
            assert group is not None
            autoprovision = group.get("autoprovision")
            allowed = self.settings.autoprovision if autoprovision is None else str(autoprovision).lower() != "false"
            if not allowed:
                raise Rejected("unknown_device", f"device {msg.device_id!r} is not provisioned and the group of apikey"
                               f" {msg.apikey!r} does not autoprovision", service=group.get("service", ""),
                               service_path=group.get("subservice", "/"))
            if not autoprovisionable(msg.device_id):
                raise Rejected("invalid_device_id", f"device id {msg.device_id[:100]!r} is not autoprovisioned: "
                               "only letters, digits and . _ - : @ (not '..', at most 128 characters) may name a "
                               "device created on its first measure", service=group.get("service", ""),
                               service_path=group.get("subservice", "/"))
            device = await self._autoprovision(msg, group, first)
            autoprovisioned = True
        cfg = merge_config(device, group, device_id=msg.device_id, apikey=msg.apikey)
        # Cache only what was read with no write in between (a write bumps the generation after it
        # commits, so an entry read before a write is never kept past it); an autoprovisioned device
        # is read back from the registry next time.
        if not autoprovisioned and self.registry.generation == generation:
            if self._cache_generation != generation or len(self._configs) >= self.config_cache_max:
                self._configs.clear()
                self._cache_generation = generation
            self._configs[(msg.apikey, msg.device_id, resource)] = (time.monotonic() + self.config_ttl, cfg)
        return cfg

    async def _autoprovision(self, msg: Inbound, group: Doc, first: Doc) -> Doc:
        entity_type = group.get("entity_type") or group.get("type") or "Thing"
        name = msg.device_id
        expression = group.get("entityNameExp")
        if expression:
            ctx = {**first, "id": msg.device_id, "type": entity_type, "service": group.get("service", ""),
                   "subservice": group.get("subservice", "/")}
            try:
                value = evaluate(str(expression), ctx)
            except JexlError as exc:
                raise Rejected("expression_failed", f"entityNameExp: {exc}") from None
            if value is not None:
                name = str(value)
        doc = {
            "device_id": msg.device_id, "service": group.get("service", ""), "service_path": group.get("subservice", "/"),
            "entity_name": entity_id(entity_type, name), "entity_type": entity_type, "apikey": msg.apikey,
            "protocol": "IoTA-UL" if msg.protocol.lower() in ("ul", "ultralight") else "IoTA-JSON",
            "transport": msg.transport.upper(),
        }
        try:
            await self.registry.create_device(doc)
            log.info("agent: autoprovisioned device %s in %s%s", msg.device_id, doc["service"], doc["service_path"])
        except Duplicate:
            pass
        return doc

    async def _tenant_of(self, msg: Inbound) -> tuple[str, str]:
        """The tenant a rejected message belongs to, from its apikey's group: ("", "") when none has it."""
        try:
            groups = await self.registry.groups_by_apikey(msg.apikey)
        except Exception:  # noqa: BLE001 - a store fault must not lose the rejection: it is kept tenantless
            return "", ""
        group = next((g for g in groups if g.get("resource") == self._resource(msg.protocol)), groups[0] if groups else None)
        return (str(group.get("service", "")), str(group.get("subservice", "/"))) if group else ("", "")

    async def record(self, msg: Inbound, rejection: Rejected) -> None:
        """Record a rejection a transport made itself (logged, counted, kept), as the ingestor records its own."""
        self._child("received", msg.transport, msg.protocol).inc()
        await self._record(msg, rejection, None)

    async def _record(self, msg: Inbound, rejection: Rejected, cfg: DeviceConfig | None, *,
                      counted: bool = True) -> None:
        topic = rejection.topic or msg.topic
        device_id = rejection.device_id or msg.device_id  # a LoRaWAN message names its device by DevEUI only
        if rejection.attribute is None:
            log.warning("agent: rejected message of device %r (apikey %r) on %s: %s: %s", device_id, msg.apikey,
                        topic, rejection.reason, rejection.detail)
        else:
            log.warning("agent: refused attribute %r of device %r (apikey %r) on %s, kept the others: %s: %s",
                        rejection.attribute, device_id, msg.apikey, topic, rejection.reason, rejection.detail)
        if counted:
            self.rejected.labels(reason=rejection.reason).inc()
        limit = self.settings.dead_letter_payload_max
        if cfg is None and rejection.service is None:
            if msg.protocol.startswith("lorawan"):  # no apikey to go by: the tenant a webhook named, if any
                rejection.service = msg.service or ""
                rejection.service_path = (msg.service_path or "/") if msg.service else ""
            else:
                rejection.service, rejection.service_path = await self._tenant_of(msg)
        letter = DeadLetter(  # NUL characters shown as U+FFFD: PostgreSQL cannot store them, and the letter must be kept
            received_at=msg.received_at, reason=rejection.reason, detail=_nul(rejection.detail),
            transport=msg.transport, protocol=msg.protocol, apikey=_nul(msg.apikey), device_id=_nul(device_id),
            topic=_nul(topic) if topic is not None else None,
            service=cfg.service if cfg else (rejection.service or ""),
            service_path=cfg.service_path if cfg else (rejection.service_path or ""),
            payload=_nul(msg.payload[:limit].decode("utf-8", errors="replace")),
            attribute=_nul(rejection.attribute) if rejection.attribute is not None else None,
        )
        try:
            await self.registry.add_dead_letter(letter)
        except Exception:
            log.exception("agent: could not store the dead letter of %s", topic)
