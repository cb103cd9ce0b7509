"""A documented network-server uplink carrying a documented device payload, to checked Smart Data Model entities."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from agents.lorawan import chirpstack, tts
from agents.lorawan.catalog import codec_for
from agents.lorawan.uplinks import to_entities
from compliance.payload import check_entity
from models.smart_data_models import model_for

VECTORS = Path(__file__).resolve().parents[3] / "agents" / "lorawan"
LOCATION = {"name": "location", "type": "geo:json", "value": {"type": "Point", "coordinates": [5.3698, 43.2965]}}


def _doc_example(name: str) -> dict[str, Any]:
    doc = json.loads((VECTORS / f"{name}_vectors.json").read_text(encoding="utf-8"))
    body: dict[str, Any] = json.loads(json.dumps(doc["uplinks"][0]["body"]))
    return body


def _checked(docs: list[dict[str, Any]]) -> None:
    for d in docs:
        model = model_for(d["type"])
        assert model is not None
        result = check_entity({**d, "@context": [model.context_url()]})
        assert not result.findings, [(f.path, f.message) for f in result.findings]


def test_a_tts_uplink_of_a_dl_pm_becomes_air_quality() -> None:
    body = _doc_example("tts")  # The Things Stack's documented uplink, carrying the DL-PM's documented payload
    body["uplink_message"].update(f_port=1, frm_payload=base64.b64encode(bytes.fromhex(
        "021b50000f0c25002500270027002701f50107012c012d012d012d67bd618dbd10")).decode())
    uplink = tts.parse_uplink(json.dumps(body).encode(), "v3/app1@tenant1/devices/dev1/up")
    outcome = to_entities(uplink, codec_for("decentlab/dl-pm"), device_id=uplink.dev_eui,
                          static_attributes=[LOCATION])
    assert outcome.error is None and outcome.warnings == ()
    aq, device = outcome.entities
    assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:0004A30B001C0530" and aq["pm10"]["value"] == 3.9
    assert aq["pm10"]["observedAt"] == "2020-02-12T15:15:46.014773Z"  # the network server's reception time
    assert device["rssi"]["value"] == -35.0
    _checked(outcome.entities)


def test_a_chirpstack_uplink_of_an_em300_th_becomes_weather() -> None:
    body = _doc_example("chirpstack")
    body.update(fPort=85, data=base64.b64encode(bytes.fromhex("01755c03673401046865")).decode())
    uplink = chirpstack.parse_uplink(json.dumps(body).encode(),
                                     "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up")
    outcome = to_entities(uplink, codec_for("milesight/em300-th"), device_id="aix-th-7", static_attributes=[LOCATION])
    assert outcome.error is None
    weather, device = outcome.entities
    assert weather["type"] == "WeatherObserved" and weather["temperature"]["value"] == 30.8
    assert device["batteryLevel"]["value"] == 0.92 and device["rssi"]["value"] == -36.0
    _checked(outcome.entities)


def test_the_documented_payload_on_the_wrong_port_is_refused_with_the_codec_and_reason() -> None:
    uplink = chirpstack.parse_uplink(_doc_example("chirpstack"))  # fPort 1, one byte 0xAA
    outcome = to_entities(uplink, codec_for("dragino/lht65"), device_id="lht-1")
    assert outcome.entities == [] and outcome.error == (
        "dragino/lht65 on FPort 1: unknown FPort 1: the vendor documents uplinks on FPort 2")
