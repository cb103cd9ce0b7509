"""Every codec's documented examples, through its profile and the mapping engine, pass `metropole check payload`.

The entities are checked by the same checker as every other profile
(compliance/payload.py): NGSI-LD syntax, the Smart Data Model's rules, and its
advice (an attribute the model does not define is a warning, and --strict
makes warnings fail).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.lorawan.catalog import catalog, codec_for
from agents.lorawan.measures import entities
from compliance.payload import check_entity
from metropole.cli import main
from models.smart_data_models import model_for
from tests.agents.lorawan.test_catalog import _decoded_outputs

LOCATION = {"name": "location", "type": "geo:json", "value": {"type": "Point", "coordinates": [5.4474, 43.5297]}}


def _with_context(doc: dict[str, Any]) -> dict[str, Any]:
    model = model_for(doc["type"])
    assert model is not None, doc["type"]
    return {**doc, "@context": [model.context_url()]}


def _entities_of(codec_id: str) -> list[dict[str, Any]]:
    codec = codec_for(codec_id)
    docs: list[dict[str, Any]] = []
    for i, data in enumerate(_decoded_outputs(codec)):
        mapped, _ = entities(codec, data, device_id=f"{codec_id.replace('/', '-')}-{i}",
                             observed_at="2026-11-26T07:00:00Z", static_attributes=[LOCATION], period_s=600)
        docs += [_with_context(d) for d in mapped]
    return docs


@pytest.mark.parametrize("codec_id", sorted(catalog()))
def test_the_examples_become_valid_smart_data_model_entities(codec_id: str) -> None:
    docs = _entities_of(codec_id)
    observed = [d for d in docs if d["type"] != "Device"]
    assert observed, "the examples reach at least one observation entity"
    assert {d["type"] for d in observed} <= {p.model for p in codec_for(codec_id).profiles}
    for doc in docs:
        result = check_entity(doc, source=codec_id)
        assert not result.findings, [(f.path, f.rule, f.message) for f in result.findings]


def test_units_and_conversions_reach_the_entity() -> None:
    codec = codec_for("decentlab/dl-pm")
    (data, *_) = _decoded_outputs(codec)
    aq, device = entities(codec, data, device_id="aix-pm-1", observed_at="2026-11-26T07:00:00Z")[0]
    assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:aix-pm-1"
    assert aq["pm25"] == {"type": "Property", "value": 3.9, "unitCode": "GQ", "observedAt": "2026-11-26T07:00:00Z"}
    assert aq["pressure"]["value"] == 968.0 and aq["pressure"]["unitCode"] == "A97"  # 96800 Pa
    assert aq["relativeHumidity"]["value"] == pytest.approx(0.416322)
    assert "pm0_5_number_concentration" not in aq and "battery_voltage" not in aq
    assert aq["refDevice"]["object"] == device["id"] == "urn:ngsi-ld:Device:aix-pm-1"
    assert device["controlledProperty"]["value"] == ["airPollution", "temperature", "humidity", "atmosphericPressure"]


def test_a_battery_percentage_reaches_the_device_entity() -> None:
    codec = codec_for("milesight/em300-th")
    docs, warnings = entities(codec, {"battery": 92, "temperature": 30.8, "humidity": 50.5}, device_id="th-1",
                              observed_at="2026-11-26T07:00:00Z")
    weather, device = docs
    assert weather["type"] == "WeatherObserved" and weather["relativeHumidity"]["value"] == 0.505
    assert device["batteryLevel"]["value"] == 0.92 and not warnings
    only_battery, _ = entities(codec, {"battery": 40}, device_id="th-1", observed_at="2026-11-26T07:00:00Z")
    assert [d["type"] for d in only_battery] == ["Device"]


def test_two_profiles_make_two_entities_and_one_device() -> None:
    codec = codec_for("elsys/ers-sound")
    docs, _ = entities(codec, {"temperature": 22.6, "humidity": 41, "soundAvg": 48, "soundPeak": 71, "motion": 2},
                       device_id="ers-1", observed_at="2026-11-26T07:00:00Z")
    assert [d["type"] for d in docs] == ["NoiseLevelObserved", "WeatherObserved", "Device"]
    assert docs[0]["LAeq"]["value"] == 48 and docs[0]["LAmax"]["unitCode"] == "2N"
    assert docs[2]["controlledProperty"]["value"] == ["noiseLevel", "temperature", "humidity", "light"]
    assert docs[0]["dateObservedTo"]["value"] == docs[0]["dateObservedFrom"]["value"]
    timed, warnings = entities(codec, {"soundAvg": 48}, device_id="ers-1", observed_at="2026-11-26T07:00:00Z",
                               period_s=900)
    assert timed[0]["dateObservedFrom"]["value"] == "2026-11-26T06:45:00Z" and not warnings


def test_cayenne_channels_map_by_their_type() -> None:
    codec = codec_for("cayenne/lpp")
    docs, warnings = entities(codec, {"temperature_3": 27.2, "temperature_5": 25.5, "digital_input_1": 1},
                              device_id="lpp-1", observed_at="2026-11-26T07:00:00Z")
    assert docs[0]["temperature"]["value"] == 25.5 and "temperature_3" not in docs[0]
    assert warnings == ("temperature_5 gives temperature again; the last value is kept",)


def test_metropole_check_payload_accepts_them_strictly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lorawan-entities.json"
    path.write_text(json.dumps([e for codec_id in sorted(catalog()) for e in _entities_of(codec_id)]), encoding="utf-8")
    assert main(["check", "payload", str(path), "--strict", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["summary"]["invalid"] == 0 and report["summary"]["warnings"] == 0
    assert report["summary"]["entities"] >= 30
