"""Commands to LoRaWAN devices: encoded by the device's codec, queued at its network server, followed by its events.

    update of <cmd>     `<cmd>_status` PENDING (as for every device); the value goes to the codec's
                        `encode_downlink` (an object as it is, any other value as {"<cmd>": value}):
                        errors -> ERROR, `<cmd>_info` the codec's reasons
    queued              published on the network server's broker, The Things Stack
                        `v3/{app}@{tenant}/devices/{dev}/down/push` (QoS 0, all its MQTT server takes),
                        ChirpStack `application/{id}/device/{DevEUI}/command/down` (QoS 1), with an id the
                        network server's events carry back (TTS `correlation_ids`, ChirpStack `id`).
                        Kept in the registry until then (status UNSENT): a broker that is away gets it
                        when the agent reconnects, even after a restart
    sent                TTS `down/sent`, ChirpStack `txack`: DELIVERED for a confirmed downlink; OK for an
                        unconfirmed one (nothing more will come: `<cmd>_info` says it was sent)
    acknowledged        TTS `down/ack`, ChirpStack `ack` with acknowledged true: OK
    refused             TTS `down/failed` (its error as `<cmd>_info`), ChirpStack `ack` false: ERROR;
                        TTS `down/nack` leaves it DELIVERED (The Things Stack queues it again)
    no word             after METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT: ERROR, `<cmd>_info` EXPIRED

The states are iotagent-node-lib's (PENDING, DELIVERED, OK, ERROR, EXPIRED as
the info of an expired command: commandService.js:87-130). A command's
provisioning may say `"lorawan": {"confirmed": true, "priority": "HIGH"}`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from agents.lorawan import chirpstack, tts
from agents.lorawan.envelope import EnvelopeError
from agents.lorawan.provisioning import Broker, codec_of

if TYPE_CHECKING:
    from agents.commands.service import CommandService, Device

__all__ = ["UNSENT", "LorawanDownlinks"]

log = logging.getLogger("metropole.agents.commands")

UNSENT = "UNSENT"  # the registry's state of a downlink not handed to its network server yet (the entity: PENDING)
_REF = "metropole:cmd:"  # prefix of our TTS correlation ids
Publish = Callable[[Broker, str, bytes, int], Awaitable[None]]


def _options(device: Device, name: str) -> Mapping[str, Any]:
    found = device.commands.get(name, {}).get("lorawan")
    return found if isinstance(found, dict) else {}


class LorawanDownlinks:
    """The LoRaWAN half of the command service."""

    def __init__(self, service: CommandService, publish: Publish | None) -> None:
        self.service = service
        self.publish = publish

    async def run(self, device: Device, name: str, value: Any) -> None:
        """A command update of a LoRaWAN device: kept, PENDING, encoded and queued."""
        svc = self.service
        now = time.time()
        ref = str(uuid.uuid4())
        await svc.registry.put_command(device.service, device.subservice, device.device_id, name, value, UNSENT,
                                       False, now, now + svc.settings.lorawan_command_timeout, ref=ref)
        await svc._status(device, {name: ("PENDING", None)})
        svc._m_commands.labels(status="PENDING").inc()
        await self._queue(device, name, value, ref)

    async def _queue(self, device: Device, name: str, value: Any, ref: str) -> None:
        svc = self.service
        found = device.lorawan
        assert found is not None
        codec = codec_of(found)
        if codec is None or codec.encode_downlink is None:
            await svc._finish(device, {name: ("ERROR", "the device's codec documents no downlink")})
            return
        encoded = codec.encode_downlink(value if isinstance(value, dict) else {name: value})
        if encoded.errors:
            await svc._finish(device, {name: ("ERROR", f"{codec.id}: {'; '.join(encoded.errors)}")})
            return
        options = _options(device, name)
        confirmed = bool(options.get("confirmed", False))
        try:
            if found.network == "tts":
                message = tts.downlink(found.application_id, found.tenant, found.end_device_id or device.device_id,
                                       encoded.fport, encoded.payload, confirmed=confirmed,
                                       priority=str(options.get("priority", "NORMAL")), correlation_id=_REF + ref)
            else:
                message = chirpstack.downlink(found.application_id, str(found.dev_eui), encoded.fport,
                                              encoded.payload, confirmed=confirmed, queue_id=ref)
        except EnvelopeError as exc:
            await svc._finish(device, {name: ("ERROR", str(exc))})
            return
        if found.broker is None or self.publish is None:
            why = ("no MQTT connection to the device's network server"
                   " (internal_attributes.lorawan.application_server.host) to queue the downlink on")
            await svc._finish(device, {name: ("ERROR", why)})
            return
        try:
            await self.publish(found.broker, message.topic, message.body, found.downlink_qos)
        except ConnectionError as exc:
            log.warning("downlink %s of device %s waits for %s: %s", name, device.device_id, found.broker, exc)
            return  # UNSENT: sent when the link comes back (resend), or EXPIRED
        await svc.registry.set_command_status(device.service, device.subservice, device.device_id, name, "PENDING")
        log.info("downlink %s of device %s queued on %s (%s)", name, device.device_id, message.topic, found.broker)

    async def resend(self, broker: Broker) -> None:
        """A network server link (re)connected: queue the downlinks that waited for it."""
        svc = self.service
        for row in await svc.registry.commands_with_status(UNSENT):
            doc = await svc.registry.get_device(row["service"], row["subservice"], row["device_id"])
            device = await svc.device(doc) if doc is not None else None
            if device is None or device.lorawan is None or device.lorawan.broker != broker:
                continue
            for pending in await svc.registry.commands_of(device.service, device.subservice, device.device_id, UNSENT):
                if pending["name"] == row["name"]:
                    await self._queue(device, pending["name"], pending["value"], str(pending["ref"]))

    async def event(self, network: str, event: str, body: bytes) -> None:
        """A network server's downlink event: the command it names moves on (unknown ones are not ours)."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            log.warning("a %s %s event that is not JSON", network, event)
            return
        if not isinstance(doc, dict):
            return
        ref = _ref(network, event, doc)
        row = await self.service.registry.command_by_ref(ref) if ref else None
        if row is None:
            return
        svc = self.service
        found = await svc.registry.get_device(row["service"], row["subservice"], row["device_id"])
        device = await svc.device(found) if found is not None else None
        if device is None:
            return
        name = row["name"]
        confirmed = bool(_options(device, name).get("confirmed", False))
        if event in ("sent", "txack"):
            if confirmed:
                await svc.registry.set_command_status(device.service, device.subservice, device.device_id, name,
                                                      "DELIVERED")
                await svc._status(device, {name: ("DELIVERED", None)})
                svc._m_commands.labels(status="DELIVERED").inc()
            else:
                await svc._finish(device, {name: ("OK", "sent by the network server (unconfirmed downlink)")})
        elif event == "ack" and (network == "tts" or doc.get("acknowledged") is True):
            await svc._finish(device, {name: ("OK", "acknowledged by the device")})
        elif event == "ack":
            await svc._finish(device, {name: ("ERROR", "not acknowledged by the device")})
        elif event == "nack":
            await svc._status(device, {name: ("DELIVERED", "not acknowledged yet: the network server sends it again")})
        elif event == "failed":
            await svc._finish(device, {name: ("ERROR", _failure(doc))})


def _ref(network: str, event: str, doc: dict[str, Any]) -> str | None:
    """Our id of the downlink an event is about (TTS: among its correlation ids; ChirpStack: queueItemId)."""
    if network == "chirpstack":
        item = doc.get("queueItemId")
        return item if isinstance(item, str) else None
    inner = doc.get(f"downlink_{event}")
    inner = inner.get("downlink", inner) if isinstance(inner, dict) and event == "failed" else inner
    ids = [*(doc.get("correlation_ids") or []), *((inner or {}).get("correlation_ids") or [])]
    return next((i.removeprefix(_REF) for i in ids if isinstance(i, str) and i.startswith(_REF)), None)


def _failure(doc: dict[str, Any]) -> str:
    error = (doc.get("downlink_failed") or {}).get("error") or {}
    text = error.get("message_format") or error.get("name") if isinstance(error, dict) else None
    return f"the network server refused the downlink: {text or 'no reason given'}"
