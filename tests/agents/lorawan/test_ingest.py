"""The agent core on LoRaWAN uplinks (both registry stores): documented envelopes to checked entities, and refusals.

Each refusal is a counted, listed rejection naming the device (its id, else its DevEUI), the tenant and the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from agents.ingest import Ingestor
from agents.messages import Inbound
from agents.metrics import Metrics
from agents.registry import Registry, open_registry
from agents.settings import AgentSettings
from compliance.payload import check_entity
from models.smart_data_models import model_for

VECTORS = Path(__file__).resolve().parents[3] / "agents" / "lorawan"
AT = "2026-11-26T07:05:00.000001Z"
DL_PM = "021b50000f0c25002500270027002701f50107012c012d012d012d67bd618dbd10"  # Decentlab's example 1
EM300_TH = "01755c03673401046865"  # Milesight's EM300-TH example: battery 92 %, 30.8 °C, 50.5 %
TTS_TOPIC = "v3/app1@tenant1/devices/dev1/up"
CS_APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
CS_TOPIC = f"application/{CS_APP}/device/0101010101010101/event/up"
LOCATION = {"name": "location", "type": "geo:point", "value": "43.2965, 5.3698"}


def documented(network: str) -> dict[str, Any]:
    """The network server's documented uplink (tts_vectors.json / chirpstack_vectors.json, first vector)."""
    doc = json.loads((VECTORS / f"{network}_vectors.json").read_text(encoding="utf-8"))
    body: dict[str, Any] = doc["uplinks"][0]["body"]
    return body


def tts_uplink(payload_hex: str, fport: int = 1, dev_eui: str = "0004A30B001C0530") -> bytes:
    body = documented("tts")
    body["end_device_ids"]["dev_eui"] = dev_eui
    body["uplink_message"].update(f_port=fport, frm_payload=base64.b64encode(bytes.fromhex(payload_hex)).decode())
    return orjson.dumps(body)


def cs_uplink(payload_hex: str, fport: int = 85) -> bytes:
    body = documented("chirpstack")
    body.update(fPort=fport, data=base64.b64encode(bytes.fromhex(payload_hex)).decode())
    return orjson.dumps(body)


def lorawan_device(device_id: str, **lorawan: Any) -> dict[str, Any]:
    return {"device_id": device_id, "service": "aix", "service_path": "/air", "transport": "LORAWAN",
            "static_attributes": [LOCATION], "internal_attributes": {"lorawan": lorawan}}


TTS_DEVICE = lorawan_device("pm-1", application_server={"provider": "TTN"}, application_id="app1@tenant1",
                            dev_eui="0004a30b001c0530", codec="decentlab/dl-pm")
CS_DEVICE = lorawan_device("th-1", application_server={"provider": "chirpstack"}, application_id=CS_APP,
                           dev_eui="0101010101010101", codec="milesight/em300-th")


def mqtt(protocol: str, payload: bytes, topic: str) -> Inbound:
    return Inbound("mqtt", protocol, "", "", payload, AT, topic=topic)


def run(registry_url: str, body: Callable[[Ingestor, Registry, Metrics], Awaitable[None]]) -> None:
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            metrics = Metrics()
            await body(Ingestor(registry, metrics, AgentSettings()), registry, metrics)
        finally:
            await registry.close()

    asyncio.run(main())


def checked(entities: list[dict[str, Any]]) -> None:
    for e in entities:
        model = model_for(e["type"])
        assert model is not None
        result = check_entity({**e, "@context": [model.context_url()]})
        assert not result.findings, [(f.path, f.message) for f in result.findings]


def test_tts_and_chirpstack_uplinks_become_checked_entities(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_device(TTS_DEVICE)
        await registry.create_device(CS_DEVICE)
        outcome = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM), TTS_TOPIC))
        assert outcome.rejection is None, outcome.rejection
        aq, device = (u.entity for u in outcome.updates)
        assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:pm-1" and aq["pm10"]["value"] == 3.9
        assert aq["pm10"]["observedAt"] == "2020-02-12T15:15:46.014773Z"  # the network server's time
        assert aq["location"]["value"] == {"type": "Point", "coordinates": [5.3698, 43.2965]}
        assert device["id"] == "urn:ngsi-ld:Device:pm-1"
        assert device["rssi"]["value"] == -35.0
        assert device["rssi"]["snr"]["value"] == 5.0 and device["rssi"]["gatewayId"]["value"] == "gtw1"
        assert {(u.tenant, u.service_path, u.device_id) for u in outcome.updates} == {("aix", "/air", "pm-1")}
        checked([aq, device])
        outcome = await ingestor.process(mqtt("lorawan-chirpstack", cs_uplink(EM300_TH), CS_TOPIC))
        weather, device = (u.entity for u in outcome.updates)
        assert weather["id"] == "urn:ngsi-ld:WeatherObserved:th-1" and weather["temperature"]["value"] == 30.8
        assert weather["relativeHumidity"]["value"] == 0.505
        assert device["batteryLevel"]["value"] == 0.92 and device["rssi"]["gatewayId"]["value"] == "0016c001f153a14c"
        checked([weather, device])
        # a webhook body (no topic), scoped to its tenant
        hook = Inbound("http", "lorawan-tts", "", "", tts_uplink(DL_PM), AT, topic="/iot/lorawan/tts", service="aix",
                       service_path="/air")
        assert len((await ingestor.process(hook)).updates) == 2
        other = hook._replace(service="lyon")
        assert (await ingestor.process(other)).rejection.reason == "unknown_device"  # type: ignore[union-attr]
        accepted = metrics.get("metropole_agent_messages_accepted_total")
        assert accepted.get(transport="mqtt", protocol="lorawan-tts") == 1  # type: ignore[union-attr]
        assert accepted.get(transport="mqtt", protocol="lorawan-chirpstack") == 1  # type: ignore[union-attr]

    run(registry_url, body)


def test_refusals_are_recorded_with_device_tenant_and_reason(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_device(TTS_DEVICE)
        corrupt = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM[:-6]), TTS_TOPIC))
        assert corrupt.rejection is not None and corrupt.rejection.reason == "codec_error"
        assert corrupt.rejection.detail.startswith("decentlab/dl-pm on FPort 1: ")
        port = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM, fport=99), TTS_TOPIC))
        assert port.rejection is not None and "unknown FPort 99" in port.rejection.detail
        unknown = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM, dev_eui="0004A30B001C0599"), TTS_TOPIC))
        assert unknown.rejection is not None and unknown.rejection.reason == "unknown_device"
        assert "no device has DevEUI 0004A30B001C0599 in tts application app1" in unknown.rejection.detail
        # the DevEUI of a provisioned device, on another application's topic: not that device
        forged = await ingestor.process(mqtt("lorawan-tts", orjson.dumps({**orjson.loads(tts_uplink(DL_PM)),
            "end_device_ids": {"device_id": "dev1", "dev_eui": "0004A30B001C0530",
                               "application_ids": {"application_id": "other"}}}), "v3/other@tenant1/devices/dev1/up"))
        assert forged.rejection is not None and forged.rejection.reason == "unknown_device"
        broken = await ingestor.process(mqtt("lorawan-tts", b'{"end_device_ids": {"dev_eui": 12}}', TTS_TOPIC))
        assert broken.rejection is not None and broken.rejection.reason == "malformed_payload"
        letters = {(d["reason"], d["device_id"], d["service"], d["service_path"], d["protocol"])
                   for d in (await registry.list_dead_letters()).items}
        assert letters == {
            ("codec_error", "pm-1", "aix", "/air", "lorawan-tts"),
            ("unknown_device", "0004A30B001C0599", "aix", "/", "lorawan-tts"),  # reported to the application's tenant
            ("unknown_device", "0004A30B001C0530", "", "", "lorawan-tts"),  # nobody listens to "other": tenantless
            ("malformed_payload", "", "aix", "/", "lorawan-tts"),  # on app1's topic
        }, letters
        rejected = metrics.get("metropole_agent_messages_rejected_total")
        assert rejected.get(reason="codec_error") == 2 and rejected.get(reason="unknown_device") == 2  # type: ignore[union-attr]

    run(registry_url, body)


def test_a_group_autoprovisions_its_application_devices_and_the_network_decoded_payload(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        group = {"apikey": "", "resource": "app1", "service": "aix", "subservice": "/", "cbroker": "http://cb:1026",
                 "internal_attributes": {"lorawan": {"application_server": {"provider": "TTN"},
                                                     "application_id": "app1@tenant1", "codec": "decentlab/dl-pm"}}}
        await registry.create_groups("aix", "/", [group])
        outcome = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM), TTS_TOPIC))
        assert [u.entity["id"] for u in outcome.updates] == ["urn:ngsi-ld:AirQualityObserved:dev1",
                                                             "urn:ngsi-ld:Device:dev1"]
        assert {u.broker_url for u in outcome.updates} == {"http://cb:1026"}
        created = await registry.devices_by_dev_eui("0004A30B001C0530")
        assert [d["device_id"] for d in created] == ["dev1"]
        assert created[0]["internal_attributes"]["lorawan"]["end_device_id"] == "dev1"
        # a device taking the network server's own decoded payload (its payload formatter)
        await registry.create_device({**lorawan_device(
            "lum-1", application_server={"provider": "TTN"}, application_id="app1@tenant1",
            dev_eui="0004A30B001C0531", data_model="application_server"), "entity_type": "WeatherObserved"})
        decoded = await ingestor.process(mqtt("lorawan-tts", orjson.dumps({**documented("tts"), "end_device_ids": {
            "device_id": "dev1", "dev_eui": "0004A30B001C0531", "application_ids": {"application_id": "app1"}}}),
            TTS_TOPIC))
        weather = decoded.updates[0].entity
        assert weather["type"] == "WeatherObserved" and weather["temperature"]["value"] == 1.0

    run(registry_url, body)


def test_an_autoprovisioned_device_whose_name_is_taken_gets_its_eui_name(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        group = {"apikey": "", "resource": "app1", "service": "aix", "subservice": "/",
                 "internal_attributes": {"lorawan": {"application_server": {"provider": "TTN"},
                                                     "application_id": "app1@tenant1", "codec": "decentlab/dl-pm"}}}
        await registry.create_groups("aix", "/", [group])
        await registry.create_device({"device_id": "dev1", "service": "aix", "service_path": "/", "apikey": "k1"})
        outcome = await ingestor.process(mqtt("lorawan-tts", tts_uplink(DL_PM), TTS_TOPIC))
        assert outcome.updates[0].entity["id"] == "urn:ngsi-ld:AirQualityObserved:eui-0004a30b001c0530"
        (created,) = await registry.devices_by_dev_eui("0004A30B001C0530")
        assert created["internal_attributes"]["lorawan"]["end_device_id"] == "dev1"  # TTS's name, for downlinks

    run(registry_url, body)
