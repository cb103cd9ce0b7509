"""The agent core's LoRaWAN half: one network-server uplink in, the NGSI-LD updates of its device out.

    envelope (tts.py / chirpstack.py)  ->  device by DevEUI (registry, cached)  ->  codec  ->  profile  ->  mapping

`Ingestor.process` hands it every message whose protocol is `lorawan-tts` or
`lorawan-chirpstack` (MQTT from the network server's broker, or a webhook /
HTTP integration POST). What it refuses it raises as `Rejected` with the
device (its id, else the DevEUI) and the tenant, which the ingestor records as
for any transport:

    malformed_payload   the envelope is no uplink (not JSON, no DevEUI, bad base64 ...), or a device
                        without a codec whose network server sent no decoded payload
    unknown_device      no device has the DevEUI in that application, and no group of it autoprovisions
    unknown_apikey      a webhook's `k` is not the device's apikey
    codec_error         the device's codec refused the payload (short, corrupt, unknown FPort ...)
    too_many_attributes over METROPOLE_AGENT_MAX_ATTRIBUTES readings

A reading the Smart Data Model cannot take (a negative concentration) is left
out with a warning, counted in `metropole_agent_lorawan_readings_dropped_total`.
The radio metadata go to the Device entity: the best gateway's `rssi` (dBm),
with its `snr` (dB) and `gatewayId` as sub-properties (NGSI-LD properties of the
reading; the Device model has `rssi` and nothing for the other two).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agents.lorawan import chirpstack, tts
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import unknown_port
from agents.lorawan.envelope import EnvelopeError, Uplink
from agents.lorawan.measures import entities
from agents.lorawan.provisioning import FIELD, LORAWAN, ConfError, LorawanConf, codec_of, conf, section
from agents.mapping.engine import DeviceConfig, entity_id, map_measure, merge_config
from agents.messages import EntityUpdate, Inbound, Rejected
from agents.metrics import Metrics
from agents.profiles import Profile
from agents.registry import Duplicate, Registry
from agents.registry.lorawan import Found, group_of, groups_listening, matches, uplink_device
from agents.settings import AgentSettings
from models.vocabulary import Doc

__all__ = ["PROTOCOLS", "LorawanIngest"]

log = logging.getLogger("metropole.agents.lorawan")

PROTOCOLS = {"lorawan-tts": tts.parse_uplink, "lorawan-chirpstack": chirpstack.parse_uplink}
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a network server's device name we take as a device_id


@dataclass(frozen=True, slots=True)
class _Device:
    """A LoRaWAN device ready to map: its configuration per profile (their plans compiled once) and codec."""

    main: DeviceConfig
    configs: Mapping[str, DeviceConfig]  # by Smart Data Model (a codec's profiles); empty without a codec
    codec: Codec | None
    conf: LorawanConf


def _urn_for(name: str, main_type: str, other: Profile) -> str:
    """The entity name of a codec's second profile: `urn:ngsi-ld:<Main>:x` becomes `urn:ngsi-ld:<Other>:x`."""
    prefix = f"urn:ngsi-ld:{main_type}:"
    if name.startswith(prefix):
        return f"urn:ngsi-ld:{other.model}:{name.removeprefix(prefix)}"
    return name if not name.startswith("urn:") else f"{name}:{other.model}"


class LorawanIngest:
    """Uplinks of LoRaWAN network servers to entity updates, with the devices' configurations cached."""

    config_cache_max = 100_000

    def __init__(self, registry: Registry, metrics: Metrics, settings: AgentSettings,
                 servers: Mapping[str, Mapping[str, Any]], *, config_ttl: float = 5.0) -> None:
        self.registry = registry
        self.settings = settings
        self.servers = servers
        self.config_ttl = config_ttl
        self._devices: dict[tuple[Any, ...], tuple[float, _Device]] = {}
        self._tenants: dict[tuple[Any, ...], tuple[float, str]] = {}  # application -> the service it reports to
        self._generation = -1
        self._dropped = metrics.counter(
            "metropole_agent_lorawan_readings_dropped_total",
            "Decoded LoRaWAN readings left out of the entities (outside the model's range, or no attribute), by codec",
            ["codec"])

    async def updates(self, msg: Inbound, dropped: list[Rejected]) -> tuple[list[EntityUpdate], DeviceConfig]:
        """The updates of one uplink message and its device's configuration; Rejected for bad input."""
        try:
            uplink = PROTOCOLS[msg.protocol](msg.payload, msg.topic if msg.transport == "mqtt" else None)
        except EnvelopeError as exc:
            service, path = _tenant(msg)
            if msg.service is None and msg.transport == "mqtt" and msg.topic:
                service = await self._tenant_of(_from_topic(msg.protocol, msg.topic))
                path = "/" if service else ""
            raise Rejected("malformed_payload", str(exc), service=service, service_path=path) from None
        device = await self._device(msg, uplink)
        cfg = device.main
        observed = uplink.received_at or msg.received_at
        limit = self.settings.max_value_length
        try:
            if device.codec is None:
                docs = self._network_decoded(msg, uplink, device, observed, dropped, limit)
            else:
                docs = self._decoded(uplink, device, device.codec, observed, dropped, limit)
        except Rejected as rejection:
            rejection.device_id = rejection.device_id or cfg.device_id
            rejection.service, rejection.service_path = cfg.service, cfg.service_path
            raise
        _radio(docs, uplink)
        contexts = list(self.settings.contexts)
        return [EntityUpdate(cfg.service, cfg.service_path, cfg.broker_url, doc, contexts, cfg.device_id, cfg.apikey)
                for doc in docs], cfg

    # -- decoding ----------------------------------------------------------------------------------

    def _decoded(self, uplink: Uplink, device: _Device, codec: Codec, observed: str, dropped: list[Rejected],
                 limit: int) -> list[Doc]:
        if codec.uplink_ports and uplink.fport not in codec.uplink_ports:
            # the catalogue's documented ports hold for every codec, whether its decoder checks them or not
            raise Rejected("codec_error", f"{codec.id} on FPort {uplink.fport}: "
                           f"{unknown_port(uplink.fport, codec.uplink_ports)}")
        decoded = codec.decode_uplink(uplink.payload, uplink.fport)
        if decoded.errors:
            raise Rejected("codec_error", f"{codec.id} on FPort {uplink.fport}: {'; '.join(decoded.errors)}")
        data = dict(decoded.data)
        self._check_count(len(data))
        if uplink.rssi is not None:
            data.setdefault("rssi", uplink.rssi)
        docs, warnings = entities(codec, data, device_id=device.main.device_id, observed_at=observed,
                                  period_s=device.conf.period_s, config_for=lambda p: device.configs[p.model],
                                  dropped=dropped, max_length=limit)
        warnings = tuple(w for w in (*decoded.warnings, *warnings) if not w.startswith("no observation period"))
        if warnings:
            self._dropped.labels(codec=codec.id).inc(len(warnings))
            log.info("lorawan: device %s (%s): %s", device.main.device_id, uplink.dev_eui, "; ".join(warnings))
        return docs

    def _network_decoded(self, msg: Inbound, uplink: Uplink, device: _Device, observed: str,
                         dropped: list[Rejected], limit: int) -> list[Doc]:
        """A device without a codec: the network server's decoded payload is its measure (data_model application_server)."""
        if uplink.decoded is None:
            raise Rejected("malformed_payload", f"the network server sent no decoded payload (FPort {uplink.fport})"
                           f" and device {device.main.device_id!r} has no codec ({FIELD}.data_model"
                           " application_server)")
        measure = dict(uplink.decoded)
        self._check_count(len(measure))
        if uplink.rssi is not None:
            measure.setdefault("rssi", uplink.rssi)
        return map_measure(device.main, measure, observed, dropped, limit)

    def _check_count(self, n: int) -> None:
        limit = self.settings.max_attributes
        if limit and n > limit:
            raise Rejected("too_many_attributes", f"{n} readings in one uplink, over the limit of {limit}"
                           " (METROPOLE_AGENT_MAX_ATTRIBUTES)")

    # -- the device --------------------------------------------------------------------------------

    async def _device(self, msg: Inbound, uplink: Uplink) -> _Device:
        key = (uplink.network, uplink.application, uplink.tenant, uplink.dev_eui, msg.service, msg.apikey)
        generation = self.registry.generation
        if generation != self._generation:
            self._devices.clear()
            self._tenants.clear()
            self._generation = generation
        entry = self._devices.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        found = await uplink_device(self.registry, uplink, self.servers, msg.service)
        if found is None:
            found = await self._autoprovision(msg, uplink)
        device = self._prepared(found)
        own = str(found.device.get("apikey") or (found.group or {}).get("apikey") or "")
        if msg.transport == "http" and own and msg.apikey != own:
            raise Rejected("unknown_apikey", f"the webhook's apikey (k) is not the one of device"
                           f" {device.main.device_id!r}", device_id=device.main.device_id,
                           service=device.main.service, service_path=device.main.service_path)
        if self.registry.generation == generation:  # nothing written meanwhile: safe to keep
            if len(self._devices) >= self.config_cache_max:
                self._devices.clear()
            self._devices[key] = (time.monotonic() + self.config_ttl, device)
        return device

    def _prepared(self, found: Found) -> _Device:
        device, group, lorawan = found
        codec = codec_of(lorawan)
        apikey = str(device.get("apikey") or (group or {}).get("apikey") or "")
        base = merge_config(device, group, device_id=str(device["device_id"]), apikey=apikey)
        if codec is None:
            return _Device(base, {}, None, lorawan)
        main_type = codec.entity_type
        name = str(device.get("entity_name") or device["device_id"])
        configs = {}
        for i, profile in enumerate(codec.profiles):
            entity_name = name if i == 0 else _urn_for(name, main_type, profile)
            configs[profile.model] = replace(base, entity_type=profile.model, entity_name=entity_name, profile=profile)
        return _Device(configs[main_type], configs, codec, lorawan)

    async def _autoprovision(self, msg: Inbound, uplink: Uplink) -> Found:
        """The device a group of the uplink's application creates for an unknown DevEUI, or Rejected."""
        listening = await groups_listening(self.registry, uplink, self.servers, msg.service)
        where = f"{uplink.network} application {uplink.application}"
        if not listening:
            service, path = _tenant(msg)
            if msg.service is None:
                service = await self._tenant_of(uplink)
                path = "/" if service else ""
            raise Rejected("unknown_device", f"no device has DevEUI {uplink.dev_eui} in {where}",
                           device_id=uplink.dev_eui, service=service, service_path=path)
        group, group_conf = listening[0]
        allowed = group.get("autoprovision")
        if not (self.settings.autoprovision if allowed is None else str(allowed).lower() != "false"):
            raise Rejected("unknown_device", f"no device has DevEUI {uplink.dev_eui} in {where}, and its group"
                           " does not autoprovision", device_id=uplink.dev_eui, service=group.get("service", ""),
                           service_path=group.get("subservice", "/"))
        name = uplink.device_name if uplink.device_name and _DEVICE_ID.match(uplink.device_name) else None
        eui_id = f"eui-{uplink.dev_eui.lower()}"  # TTS's default device id; the fallback when the name is taken
        lorawan: Doc = {"application_id": (section(group) or {}).get("application_id"), "dev_eui": uplink.dev_eui}
        if uplink.network == "tts" and uplink.device_name:
            lorawan["end_device_id"] = uplink.device_name
        codec = codec_of(group_conf)
        doc: Doc = {}
        for device_id in dict.fromkeys(i for i in (name, eui_id) if i):
            doc = {"device_id": device_id, "service": group.get("service", ""),
                   "service_path": group.get("subservice", "/"), "apikey": group.get("apikey") or "",
                   "transport": LORAWAN, "internal_attributes": {"lorawan": lorawan}}
            if codec is not None:
                doc["entity_name"] = entity_id(codec.entity_type, device_id)
            try:
                await self.registry.create_device(doc)
                break
            except Duplicate:
                again = await uplink_device(self.registry, uplink, self.servers, msg.service)
                if again is not None:
                    return again  # another message of the device created it meanwhile
        else:
            raise Rejected("unknown_device", f"DevEUI {uplink.dev_eui} of {where} could not be autoprovisioned:"
                           f" device ids {name!r} and {eui_id!r} are taken", device_id=uplink.dev_eui,
                           service=str(group.get("service", "")), service_path=str(group.get("subservice", "/")))
        log.info("lorawan: autoprovisioned device %s (DevEUI %s) in %s%s", device_id, uplink.dev_eui, doc["service"],
                 doc["service_path"])
        found = await uplink_device(self.registry, uplink, self.servers, msg.service)
        if found is None:  # the group changed between the two reads
            raise Rejected("unknown_device", f"DevEUI {uplink.dev_eui} of {where} is not provisioned",
                           device_id=uplink.dev_eui)
        return found

    async def _tenant_of(self, uplink: Uplink | None) -> str:
        """The service whose devices listen to an uplink's application, where its unknown DevEUI is reported.

        Remembered per application like the devices (an application's devices not provisioned yet keep
        sending, and finding the tenant reads every LoRaWAN device).
        """
        if uplink is None:
            return ""
        key = ("tenant", uplink.network, uplink.application, uplink.tenant)
        entry = self._tenants.get(key)
        if entry is not None and entry[0] >= time.monotonic() and self._generation == self.registry.generation:
            return entry[1]
        generation = self.registry.generation
        service = ""
        for group, _ in await groups_listening(self.registry, uplink, self.servers):
            service = str(group.get("service", ""))
            break
        else:
            for device in await self.registry.lorawan_devices():
                try:
                    if matches(conf(device, await group_of(self.registry, device), self.servers), uplink):
                        service = str(device.get("service", ""))
                        break
                except ConfError:
                    continue
        if generation == self.registry.generation:
            if len(self._tenants) >= 10_000:
                self._tenants.clear()
            self._tenants[key] = (time.monotonic() + self.config_ttl, service)
        return service


def _tenant(msg: Inbound) -> tuple[str, str]:
    """The tenant a transport named for a message (a webhook's headers); ("", "") when none: listed tenantless."""
    return (msg.service, msg.service_path or "/") if msg.service else ("", "")


def _from_topic(protocol: str, topic: str) -> Uplink | None:
    """The application an MQTT topic names, as an uplink with no content (to tell whose a bad message is)."""
    try:
        if protocol == "lorawan-tts":
            app, tenant, name = tts.topic_ids(topic)
            return Uplink("tts", "", name, app, tenant, 0, b"", None, None, None, ())
        app, eui, _ = chirpstack.topic_ids(topic)
        return Uplink("chirpstack", eui, None, app, None, 0, b"", None, None, None, ())
    except EnvelopeError:
        return None


def _radio(docs: list[Doc], uplink: Uplink) -> None:
    """The best gateway's SNR and id as sub-properties of the Device entity's `rssi`."""
    heard = [g for g in uplink.gateways if g.rssi is not None]
    if not heard:
        return
    best = max(heard, key=lambda g: g.rssi if g.rssi is not None else float("-inf"))
    for doc in docs:
        rssi = doc.get("rssi") if doc.get("type") == "Device" else None
        if isinstance(rssi, dict):
            rssi["value"] = best.rssi
            if best.snr is not None:
                rssi["snr"] = {"type": "Property", "value": best.snr}
            if best.gateway_id:
                rssi["gatewayId"] = {"type": "Property", "value": best.gateway_id}
