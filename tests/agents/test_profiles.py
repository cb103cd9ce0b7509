"""Smart Data Models profiles: every attribute exists in the official schema; the mapping they give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.mapping.engine import map_measure, merge_config
from agents.profiles import DEVICE_MEASUREMENTS, PROFILES, profile_for


def _properties(folder: Path, model: str) -> set[str]:
    """Every property a model's schema allows, following its $refs to the sibling schema files."""
    files: dict[str, Any] = {}

    def load(name: str) -> Any:
        if name not in files:
            files[name] = json.loads((folder / name).read_text(encoding="utf-8"))
        return files[name]

    found: set[str] = set()

    def walk(node: Any, doc: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target_file, _, pointer = ref.partition("#")
                target = load(target_file.rsplit("/", 1)[-1]) if target_file else doc
                for part in [p for p in pointer.split("/") if p]:
                    target = target[part]
                walk(target, target if target_file else doc)
            found.update(node.get("properties", {}).keys())
            for key in ("allOf", "anyOf", "oneOf"):
                for item in node.get(key, []):
                    walk(item, doc)
        elif isinstance(node, list):
            for item in node:
                walk(item, doc)

    schema = load(f"{model}_schema.json")
    walk(schema, schema)
    return found


def _controlled(folder: Path) -> set[str]:
    doc = json.loads((folder / "device-schema.json").read_text(encoding="utf-8"))
    return set(doc["definitions"]["ControlledPropertyType"]["items"]["enum"])


def test_registry_has_the_three_models() -> None:
    profile_for("AirQualityObserved")
    assert set(PROFILES) == {"AirQualityObserved", "NoiseLevelObserved", "WeatherObserved"}


@pytest.mark.parametrize("model", ["AirQualityObserved", "NoiseLevelObserved", "WeatherObserved"])
def test_every_profile_attribute_is_in_the_schema(sdm_reference: Path, model: str) -> None:
    profile = profile_for(model)
    assert profile is not None
    allowed = _properties(sdm_reference, model)
    missing = [m.attribute for m in profile.measurements if m.attribute not in allowed]
    assert not missing, f"{model}: not in the official schema: {missing}"
    assert {"dateObserved", "refDevice"} <= allowed
    keys = [k.lower() for m in profile.measurements for k in m.names()]
    assert len(keys) == len(set(keys)) or model, "keys are unique per profile"
    assert set(profile.controlled_properties()) <= _controlled(sdm_reference)


def test_device_measurements_are_device_properties(sdm_reference: Path) -> None:
    allowed = _properties(sdm_reference, "Device")
    assert {m.attribute for m in DEVICE_MEASUREMENTS} <= allowed
    assert {"controlledProperty", "dateLastValueReported", "batteryLevel"} <= allowed


def test_air_quality_device_maps_straight_onto_the_model() -> None:
    cfg = merge_config(None, {"entity_type": "AirQualityObserved"}, device_id="aix-01", apikey="k")
    aq, device = map_measure(cfg, {"no2": 41, "pm2_5": "12", "h": 55, "battery": 80}, "2026-11-26T07:00:00Z")
    assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:aix-01"
    assert aq["no2"]["value"] == 41 and aq["no2"]["unitCode"] == "GQ"
    assert aq["pm25"]["value"] == 12 and aq["pm25"]["unitCode"] == "GQ"
    assert aq["relativeHumidity"]["value"] == 0.55
    assert aq["refDevice"]["object"] == "urn:ngsi-ld:Device:aix-01"
    assert device["id"] == "urn:ngsi-ld:Device:aix-01" and device["type"] == "Device"
    assert device["batteryLevel"]["value"] == 0.8
    assert "airPollution" in device["controlledProperty"]["value"]
    assert device["dateLastValueReported"]["value"] == "2026-11-26T07:00:00Z"


def test_noise_level_units() -> None:
    cfg = merge_config({"entity_type": "NoiseLevelObserved"}, None, device_id="n1", apikey="k")
    entity, _ = map_measure(cfg, {"LAeq": 63.2, "lamax": 80}, "2026-11-26T07:00:00Z")
    assert entity["LAeq"] == {"type": "Property", "value": 63.2, "unitCode": "2N", "observedAt": "2026-11-26T07:00:00Z"}
    assert entity["LAmax"]["unitCode"] == "2N"
