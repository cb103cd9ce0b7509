"""The mapping engine: provisioned attributes, expressions, geo, timestamps, multi-entity, explicitAttrs."""

from __future__ import annotations

from typing import Any

import pytest

from agents.mapping.engine import entity_id, map_measure, merge_config
from agents.messages import Rejected

AT = "2026-11-26T07:05:00Z"


def _map(device: dict[str, Any] | None, measure: dict[str, Any], group: dict[str, Any] | None = None) -> list[dict]:
    cfg = merge_config(device, group, device_id="dev1", apikey="k")
    return map_measure(cfg, measure, AT)


def test_object_id_name_type_metadata_and_statics() -> None:
    device = {"entity_type": "Thing", "attributes": [
        {"object_id": "t", "name": "temperature", "type": "Float",
         "metadata": {"unitCode": {"type": "Text", "value": "CEL"}, "accuracy": {"type": "Number", "value": 0.5}}}],
        "static_attributes": [{"name": "refStore", "type": "Relationship", "value": "urn:ngsi-ld:Store:001"}]}
    [entity] = _map(device, {"t": "21.5"})
    assert entity["id"] == "urn:ngsi-ld:Thing:dev1"
    assert entity["temperature"] == {"type": "Property", "value": 21.5, "unitCode": "CEL",
                                     "accuracy": {"type": "Property", "value": 0.5}, "observedAt": AT}
    assert entity["refStore"] == {"type": "Relationship", "object": "urn:ngsi-ld:Store:001", "observedAt": AT}


def test_unprovisioned_measures_pass_unless_explicit() -> None:
    [entity] = _map({"entity_type": "Thing"}, {"x": 1, "label": "a"})
    assert entity["x"]["value"] == 1 and entity["label"]["value"] == "a"
    device = {"entity_type": "Thing", "explicitAttrs": True, "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}]}
    [entity] = _map(device, {"t": 1, "x": 2})
    assert "temperature" in entity and "x" not in entity
    device["explicitAttrs"] = "['humidity']"
    device["attributes"].append({"object_id": "h", "name": "humidity", "type": "Number"})
    [entity] = _map(device, {"t": 1, "h": 50})
    assert "humidity" in entity and "temperature" not in entity


def test_geo_point_string_becomes_lng_lat() -> None:
    device = {"entity_type": "Thing", "attributes": [{"object_id": "pos", "name": "location", "type": "geo:point"}]}
    [entity] = _map(device, {"pos": "43.5265, 5.4474"})
    assert entity["location"]["type"] == "GeoProperty"
    assert entity["location"]["value"] == {"type": "Point", "coordinates": [5.4474, 43.5265]}


def test_geo_json_expression_from_doc() -> None:
    device = {"entity_type": "WasteContainer", "entity_name": "WasteContainer:WC45", "attributes": [
        {"name": "location", "type": "geo:json", "expression": "{coordinates: [longitude,latitude], type: 'Point'}"},
        {"name": "fillingLevel", "type": "Number", "expression": "level / 100"},
        {"name": "level", "type": "Number"}, {"name": "latitude", "type": "Number"}, {"name": "longitude", "type": "Number"}]}
    [entity] = _map(device, {"level": 85.3, "latitude": 1.9})
    assert entity["id"] == "urn:ngsi-ld:WasteContainer:WC45"
    assert entity["fillingLevel"]["value"] == pytest.approx(0.853)
    assert "location" not in entity  # longitude missing: the expression is not evaluated
    [entity] = _map(device, {"level": 10, "latitude": 43.5, "longitude": 5.4})
    assert entity["location"]["value"] == {"type": "Point", "coordinates": [5.4, 43.5]}


def test_nested_expressions_in_order() -> None:
    device = {"entity_type": "Tank", "attributes": [
        {"name": "correctedLevel", "type": "Number", "expression": "level * 0.5"},
        {"name": "normalizedLevel", "type": "Number", "expression": "correctedLevel / 100"}]}
    [entity] = _map(device, {"level": 200})
    assert entity["correctedLevel"]["value"] == 100 and entity["normalizedLevel"]["value"] == 1


def test_multi_entity_from_doc() -> None:
    device = {"entity_name": "urn:ngsi-ld:Device:contador12", "entity_type": "multientity", "attributes": [
        {"object_id": "cont1", "name": "vol", "type": "Text", "entity_name": "urn:ngsi-ld:Device:WaterMeterSoria01", "entity_type": "WaterMeter"},
        {"object_id": "cont2", "name": "vol", "type": "Text", "entity_name": "urn:ngsi-ld:Device:WaterMeterSoria02", "entity_type": "WaterMeter"}]}
    entities = _map(device, {"cont1": "38", "cont2": "39"})
    assert [e["id"] for e in entities] == ["urn:ngsi-ld:Device:contador12", "urn:ngsi-ld:Device:WaterMeterSoria01",
                                          "urn:ngsi-ld:Device:WaterMeterSoria02"]
    assert entities[1]["type"] == "WaterMeter" and entities[1]["vol"]["value"] == "38"


def test_time_instant_is_observed_at_and_timestamp_flag() -> None:
    device = {"entity_type": "Thing", "timestamp": True, "timezone": "Europe/Paris"}
    [entity] = _map(device, {"t": 1, "TimeInstant": "2026-11-26T08:00:00"})
    assert entity["t"]["observedAt"] == "2026-11-26T07:00:00Z"
    assert entity["TimeInstant"]["value"] == "2026-11-26T07:00:00Z"  # a DateTime string (clause 4.6.3)
    with pytest.raises(Rejected) as info:
        _map(device, {"t": 1, "TimeInstant": "yesterday"})
    assert info.value.reason == "wrong_type"


@pytest.mark.parametrize(("type_name", "value"), [("Number", "abc"), ("Integer", 2.5), ("Boolean", "maybe"),
                                                  ("Relationship", "not a uri"), ("geo:point", "91, 10"),
                                                  ("DateTime", "tomorrow")])
def test_wrong_type_is_rejected(type_name: str, value: Any) -> None:
    device = {"entity_type": "Thing", "attributes": [{"object_id": "v", "name": "value", "type": type_name}]}
    with pytest.raises(Rejected) as info:
        _map(device, {"v": value})
    assert info.value.reason == "wrong_type" and "value" in info.value.detail


def test_failing_expression_is_rejected() -> None:
    device = {"entity_type": "Thing", "attributes": [{"name": "x", "type": "Number", "expression": "v * "}]}
    with pytest.raises(Rejected) as info:
        _map(device, {"v": 1})
    assert info.value.reason == "expression_failed"


def test_skip_value() -> None:
    device = {"entity_type": "Thing", "attributes": [{"name": "x", "type": "Number", "expression": "v * 0", "skipValue": 0}]}
    [entity] = _map(device, {"v": 3})
    assert "x" not in entity


def test_entity_ids() -> None:
    assert entity_id("AirQualityObserved", "s1") == "urn:ngsi-ld:AirQualityObserved:s1"
    assert entity_id("Thing", "urn:ngsi-ld:Thing:x") == "urn:ngsi-ld:Thing:x"
    assert entity_id("Thing", "Thing:x") == "urn:ngsi-ld:Thing:x"


def test_group_and_device_merge() -> None:
    group = {"entity_type": "Thing", "cbroker": "http://orion-ld:1026", "explicitAttrs": True,
             "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
             "static_attributes": [{"name": "category", "type": "Text", "value": "sensor"}]}
    cfg = merge_config({"explicitAttrs": False}, group, device_id="d", apikey="k")
    assert cfg.broker_url == "http://orion-ld:1026" and cfg.explicit_attrs is False
    [entity] = map_measure(cfg, {"t": 3, "other": 1}, AT)
    assert entity["temperature"]["value"] == 3 and entity["other"]["value"] == 1 and entity["category"]["value"] == "sensor"


def test_one_config_maps_every_measure_afresh() -> None:
    """The plan compiled from a configuration serves every measure; what a caller does to one update stays there."""
    device = {"entity_type": "AirQualityObserved", "attributes": [
        {"object_id": "t", "name": "temperature", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
        {"object_id": "h", "name": "relativeHumidity", "type": "Number", "expression": "h / 100"}],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "43.5265, 5.4474"},
                              {"name": "refPointOfInterest", "type": "Relationship", "value": "urn:ngsi-ld:PointOfInterest:1"}]}
    cfg = merge_config(device, None, device_id="dev1", apikey="k")
    measure = {"t": 21.5, "h": 45, "no2": 33}
    first = map_measure(cfg, measure, AT)
    for entity in first:
        for member in entity.values():
            if isinstance(member, dict):
                member["observedAt"] = "tampered"
                member["extra"] = 1
    later = "2026-11-26T07:06:00.000001Z"
    again = map_measure(cfg, measure, later)
    assert again == map_measure(merge_config(device, None, device_id="dev1", apikey="k"), measure, later)
    aq = again[0]
    assert aq["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.4474, 43.5265]},
                              "observedAt": later}
    assert aq["temperature"] == {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": later}
    assert aq["relativeHumidity"]["value"] == 0.45 and aq["no2"]["unitCode"] == "GQ"


def test_static_of_the_wrong_type_rejects_each_measure_that_sends_it() -> None:
    device = {"entity_type": "Thing", "explicitAttrs": "send ? ['t', 'cap'] : ['t']",
              "attributes": [{"object_id": "t", "name": "t", "type": "Number"}],
              "static_attributes": [{"name": "cap", "type": "Number", "value": "n/a"}]}
    cfg = merge_config(device, None, device_id="dev1", apikey="k")
    [entity] = map_measure(cfg, {"t": 1, "send": False}, AT)
    assert "cap" not in entity and entity["t"]["value"] == 1
    for _ in range(2):
        with pytest.raises(Rejected) as info:
            map_measure(cfg, {"t": 1, "send": True}, AT)
        assert info.value.reason == "wrong_type" and "'cap'" in info.value.detail


def test_static_metadata_observed_at_wins() -> None:
    device = {"entity_type": "Thing", "static_attributes": [
        {"name": "installed", "type": "Text", "value": "2024", "metadata": {"observedAt": "2024-01-01T00:00:00Z"}}]}
    [entity] = _map(device, {"t": 1})
    assert entity["installed"] == {"type": "Property", "value": "2024", "observedAt": "2024-01-01T00:00:00Z"}
    assert entity["t"]["observedAt"] == AT
