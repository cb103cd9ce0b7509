"""The Smart Data Models agree with the official JSON Schemas, read offline from ../shared.

The yardstick is `jsonschema` (draft 2020-12) with its format checker, the
schemas' remote `$ref`s answered from the local files by a
`referencing.Registry` (nothing is fetched). For every payload, generated
or official, the pydantic model and the schema must both accept or both
reject, and name the same attributes and rules. Where the official files
are wrong (../shared/reference/smart-data-models/README.md), a test says so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from models.errors import InvalidUri
from models.normalize import looks_like_attribute
from models.representation import Representation
from models.smart_data_models import MODELS, SmartDataModel, model_for, read_ngsi_ld
from models.smart_data_models.fields import json_schema_rule
from models.validation import is_uri

SHARED_FILES = {
    "https://smart-data-models.github.io/data-models/common-schema.json": "common-schema.json",
    "https://smart-data-models.github.io/dataModel.Device/device-schema.json": "device-schema.json",
    "https://smart-data-models.github.io/dataModel.Weather/weather-schema.json": "weather-schema.json",
    "https://smart-data-models.github.io/dataModel.Environment/Environment-schema.json": "Environment-schema.json",
    # AirQualityObserved refers to the same file at its raw GitHub address.
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/Environment-schema.json":
        "Environment-schema.json",
}


def official_validators(folder: Path) -> dict[str, Draft202012Validator]:
    """One validator per model, every remote $ref mapped to ../shared; a format checker on."""

    def retrieve(uri: str) -> Resource:
        name = SHARED_FILES.get(uri)
        if name is None:  # never fetch: an unknown reference is a test failure
            raise NoSuchResource(ref=uri)
        return Resource.from_contents(json.loads((folder / name).read_text(encoding="utf-8")))

    registry: Registry = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    checker = Draft202012Validator.FORMAT_CHECKER
    return {
        name: Draft202012Validator(json.loads((folder / f"{name}_schema.json").read_text()),
                                   registry=registry, format_checker=checker)
        for name in MODELS
    }


@pytest.fixture(scope="module")
def validators(sdm_reference: Path) -> dict[str, Draft202012Validator]:
    return official_validators(sdm_reference)


def schema_faults(validator: Draft202012Validator, kv: dict[str, Any]) -> set[tuple[str, str]]:
    """(attribute, JSON Schema keyword) of each error the official schema reports."""
    out = set()
    for error in validator.iter_errors(kv):
        if error.validator == "required":
            out.add((str(error.message.split("'")[1]), "required"))
        else:
            attribute = str(error.absolute_path[0]) if error.absolute_path else "$"
            out.add((attribute, str(error.validator)))
    return out


def model_faults(model: type[SmartDataModel], kv: dict[str, Any]) -> set[tuple[str, str]]:
    """(attribute, rule) of each error the pydantic model reports."""
    try:
        model.model_validate(kv)
    except ValidationError as exc:
        return {(str(e["loc"][0]), json_schema_rule(e["type"])) for e in exc.errors()}
    return set()


def assert_agree(validator: Draft202012Validator, model: type[SmartDataModel], kv: dict[str, Any]) -> bool:
    """Both accept or both reject, naming the same attributes; returns whether the payload is valid."""
    official = schema_faults(validator, kv)
    ours = model_faults(model, kv)
    assert {a for a, _ in ours} == {a for a, _ in official}, (kv, ours, official)
    # The model names one rule per attribute; the schema may name several for one value
    # (a number given for a string enum breaks both "type" and "enum"): ours is among them.
    assert ours <= official, (kv, ours, official)
    return not ours


def test_format_checker_checks_date_time_and_uri() -> None:
    # Without rfc3339-validator / rfc3986-validator jsonschema silently accepts any string.
    assert {"date-time", "uri", "ipv4", "ipv6"} <= set(Draft202012Validator.FORMAT_CHECKER.checkers)


def test_registry_lists_the_six_models() -> None:
    assert set(MODELS) == {"AirQualityObserved", "NoiseLevelObserved", "WeatherObserved", "Device",
                           "DeviceModel", "DeviceMeasurement"}
    for name, model in MODELS.items():
        assert model.ENTITY_TYPE == name
        assert model.SCHEMA_ID.endswith(f"/{model.SUBJECT}/{name}/schema.json")
        assert set(model.UNITS) <= model.attribute_names(), name
        assert model.RELATIONSHIPS <= model.attribute_names(), name
    assert model_for("https://smartdatamodels.org/dataModel.Environment/AirQualityObserved") is MODELS[
        "AirQualityObserved"]
    assert model_for("Vehicle") is None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_the_official_schema_version_and_attributes(sdm_reference: Path, name: str) -> None:
    schema = json.loads((sdm_reference / f"{name}_schema.json").read_text())
    model = MODELS[name]
    assert schema["$id"] == model.SCHEMA_ID
    assert schema["$schemaVersion"] == model.SCHEMA_VERSION
    own = set().union(*(part.get("properties", {}) for part in schema["allOf"]))
    assert own <= model.attribute_names(), own - model.attribute_names()
    required = set(schema["required"])
    assert required == {f.alias or n for n, f in model.model_fields.items() if f.is_required()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_attribute_is_a_term_of_the_subject_context(sdm_reference: Path, name: str) -> None:
    model = MODELS[name]
    subject = model.SUBJECT
    terms = json.loads((sdm_reference / f"context-{subject}.jsonld").read_text())["@context"]
    missing = {a for a in model.attribute_names() if a not in terms and a not in ("id", "type")}
    assert not missing, f"{name}: {sorted(missing)} would expand to the default vocabulary"
    assert model.ENTITY_TYPE in terms


# --- the official examples -----------------------------------------------------------------

EXPECTED_OFFICIAL_FAULTS = {
    # The README of the reference folder lists these faults of the official files.
    "AirQualityObserved_example-normalized.jsonld": {
        ("tsp", "type"),  # 73.3 where the schema requires an integer
        ("windDirection", "maximum"),  # 186 above the schema's maximum of 180
        ("dateObserved", "format"),  # no time zone: not an RFC 3339 date-time
    },
    "AirQualityObserved_example.jsonld": {("dateObserved", "format")},
}


def _examples(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_example*.jsonld"))


def test_official_examples_agree_and_their_known_faults_show(sdm_reference: Path,
                                                             validators: dict[str, Draft202012Validator]) -> None:
    seen = {}
    for path in _examples(sdm_reference):
        doc = json.loads(path.read_text(encoding="utf-8"))
        read = read_ngsi_ld(doc)
        expected_repr = Representation.NORMALIZED if "normalized" in path.name else Representation.SIMPLIFIED
        assert read.representation is expected_repr, path.name
        model = model_for(doc["type"])
        assert model is not None
        official = schema_faults(validators[model.ENTITY_TYPE], read.key_values)
        assert model_faults(model, read.key_values) == official, path.name
        seen[path.name] = official
    assert len(seen) == 12
    for name, faults in seen.items():
        assert faults == EXPECTED_OFFICIAL_FAULTS.get(name, set()), name


def test_official_example_writes_typeOfLocation_where_the_schema_has_typeofLocation(
    sdm_reference: Path,
) -> None:
    # A fault of the official files: the schema does not close its objects, so the
    # misspelt attribute passes validation while the real one is never filled.
    schema = json.loads((sdm_reference / "AirQualityObserved_schema.json").read_text())
    properties = schema["allOf"][1]["properties"]
    assert "typeofLocation" in properties and "typeOfLocation" not in properties
    for name in ("AirQualityObserved_example.jsonld", "AirQualityObserved_example-normalized.jsonld"):
        doc = json.loads((sdm_reference / name).read_text())
        assert "typeOfLocation" in doc and "typeofLocation" not in doc
        model = MODELS["AirQualityObserved"].model_construct()
        assert "typeOfLocation" not in model.attribute_names()


# --- generated payloads ----------------------------------------------------------------------

BASES: dict[str, dict[str, Any]] = {
    "AirQualityObserved": {"id": "urn:ngsi-ld:AirQualityObserved:aix-1", "type": "AirQualityObserved",
                           "dateObserved": "2026-11-26T07:00:00Z",
                           "location": {"type": "Point", "coordinates": [5.4474, 43.5265]}, "no2": 41},
    "NoiseLevelObserved": {"id": "urn:ngsi-ld:NoiseLevelObserved:m-1", "type": "NoiseLevelObserved",
                           "dateObservedFrom": "2026-11-26T07:00:00Z", "dateObservedTo": "2026-11-26T08:00:00Z",
                           "location": {"type": "Point", "coordinates": [5.37, 43.29]}, "LAeq": 61.5},
    "WeatherObserved": {"id": "urn:ngsi-ld:WeatherObserved:m-1", "type": "WeatherObserved",
                        "dateObserved": "2026-11-26T07:00:00+01:00",
                        "location": {"type": "Point", "coordinates": [5.37, 43.29]}, "temperature": 11.5},
    "Device": {"id": "urn:ngsi-ld:Device:d-1", "type": "Device", "controlledProperty": ["temperature"]},
    "DeviceModel": {"id": "urn:ngsi-ld:DeviceModel:dm-1", "type": "DeviceModel", "category": ["sensor"],
                    "controlledProperty": ["airPollution"], "manufacturerName": "Acme", "brandName": "Acme",
                    "modelName": "AQ-1"},
    "DeviceMeasurement": {"id": "urn:ngsi-ld:DeviceMeasurement:x-1", "type": "DeviceMeasurement"},
}

_NUMBERS = st.sampled_from([-361, -181, -180, -1, -0.5, 0, 0.25, 1, 1.0, 1.5, 2, 3.0, 73.3, 180, 186, 359.9,
                            360, 361, 1013.25]) | st.integers(-500, 500) | st.floats(-1e3, 1e3, allow_nan=False)
_STRINGS = st.sampled_from([
    "", "a", "moderate", "indoor", "outdoor", "Inlet", "Exit", "sensor", "HVAC", "meter", "fillingLevel",
    "temperature", "airPollution", "lora", "mqtt", "C0", "C3", "E9", "sensing", "metering", "0", "1", "3",
    "falling", "raising", "good", "veryGood", "2026-11-26T07:00:00Z", "2026-11-26T07:00:00",
    "2026-02-30T07:00:00Z", "2026-11-26t07:00:00z", "2026-11-26T07:00:00.123+05:30", "2026-11-26",
    "urn:ngsi-ld:Device:d-1", "https://example.org/a?b=c#d", "http://[::1]:8080/x", "http://[zz]/",
    "not a uri", "x y", "has space:yes", "00:1B:44:11:3A:B7", "00:1B:44:11:3A", "192.168.0.1", "::1",
    "999.1.1.1", "Acme", "l%3D0.22",
]) | st.text(max_size=12)
_GEOMETRIES = st.sampled_from([
    {"type": "Point", "coordinates": [5.4, 43.5]},
    {"type": "Point", "coordinates": [5.4]},
    {"type": "Point", "coordinates": [5.4, 43.5, 100, 7]},
    {"type": "Point", "coordinates": ["5.4", 43.5]},
    {"type": "Point"},
    {"type": "LineString", "coordinates": [[5.4, 43.5], [5.5, 43.6]]},
    {"type": "LineString", "coordinates": [[5.4, 43.5]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
    {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]},
    {"type": "MultiLineString", "coordinates": [[[1, 2], [3, 4]]]},
    {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]},
    {"type": "Point", "coordinates": [1, 2], "bbox": [0, 0, 1]},
    {"type": "Point", "coordinates": [1, 2], "bbox": [0, 0, 1, 1]},
    {"type": "Circle", "coordinates": [1, 2]},
    {"type": "PostalAddress", "addressLocality": "Aix"},
    {"streetAddress": "1 cours Mirabeau", "addressCountry": "FR"},
    {"streetAddress": 1},
    {"parameter": "period", "value": "60"},
    {"instValue": 1, "maxOverTime": 3},
    {"averageValue": "high"},
])
_SCALARS = _NUMBERS | _STRINGS | st.booleans() | st.none() | _GEOMETRIES
_VALUES = _SCALARS | st.lists(_SCALARS, max_size=3)


@st.composite
def mutated_payloads(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid base entity with up to four attributes set to arbitrary values or removed."""
    model = MODELS[name]
    kv = copy.deepcopy(BASES[name])
    attributes = sorted(model.attribute_names() - {"type"})
    for _ in range(draw(st.integers(0, 4))):
        attribute = draw(st.sampled_from(attributes))
        if draw(st.integers(0, 9)) == 0:
            kv.pop(attribute, None)
        else:
            kv[attribute] = draw(_VALUES)
    if draw(st.integers(0, 19)) == 0:
        kv["type"] = draw(st.sampled_from(["Device", "Thing", 3]))
    return kv


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generated_payloads_are_accepted_and_rejected_alike(
    validators: dict[str, Draft202012Validator], name: str
) -> None:
    outcomes: list[bool] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_payloads(name))
    def agree(kv: dict[str, Any]) -> None:
        outcomes.append(assert_agree(validators[name], MODELS[name], kv))

    agree()
    # The run is only evidence if both verdicts occurred many times.
    assert outcomes.count(True) >= 20 and outcomes.count(False) >= 20, (outcomes.count(True), len(outcomes))


def _identifiers_are_uris(model: type[SmartDataModel], kv: dict[str, Any]) -> bool:
    refs = [kv[r] for r in model.RELATIONSHIPS if r in kv]
    flat = [x for r in refs for x in (r if isinstance(r, list) else [r])]
    return all(is_uri(x) for x in [kv["id"], *flat])


def _ambiguous_in_key_values(kv: dict[str, Any]) -> bool:
    return any(looks_like_attribute(v) for k, v in kv.items() if k not in ("id", "type"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_what_the_models_produce_validates_in_every_representation(
    validators: dict[str, Draft202012Validator], name: str
) -> None:
    @settings(max_examples=100, deadline=None)
    @given(mutated_payloads(name))
    def produce(kv: dict[str, Any]) -> None:
        try:
            entity = MODELS[name].model_validate(kv)
        except ValidationError:
            return
        for representation in Representation:
            doc = entity.to_ngsi_ld(representation)
            assert doc["@context"] == [MODELS[name].context_url()]
            try:
                read = read_ngsi_ld(doc)
            except InvalidUri:
                # The official schemas accept NGSI-v2 identifiers such as "a" for
                # id and ref* members; NGSI-LD requires URIs (clauses 4.5.1, 4.5.3),
                # so such a payload cannot become an NGSI-LD entity, and says so.
                assert not _identifiers_are_uris(MODELS[name], entity.key_values())
                return
            if representation is Representation.SIMPLIFIED and _ambiguous_in_key_values(entity.key_values()):
                # keyValues is lossy (clause 4.5.4): a compound value holding a
                # "value" or "object" member reads back as an attribute, not a value.
                continue
            assert read.key_values == entity.key_values(), representation
            assert validators[name].is_valid(read.key_values)

    produce()


def test_normalized_output_carries_unit_codes_types_and_observed_at() -> None:
    aq = MODELS["AirQualityObserved"].model_validate(
        {**BASES["AirQualityObserved"], "refDevice": "urn:ngsi-ld:Device:d-1", "co": 0.4, "temperature": 12.5}
    )
    doc = aq.to_ngsi_ld()
    assert doc["no2"] == {"type": "Property", "value": 41, "unitCode": "GQ", "observedAt": "2026-11-26T07:00:00Z"}
    assert doc["co"]["unitCode"] == "GP" and doc["temperature"]["unitCode"] == "CEL"
    assert doc["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:d-1"}
    assert doc["location"]["type"] == "GeoProperty"
    assert doc["dateObserved"]["value"] == {"@type": "DateTime", "@value": "2026-11-26T07:00:00Z"}
    assert doc["@context"] == ["https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"]
    noise = MODELS["NoiseLevelObserved"].model_validate(BASES["NoiseLevelObserved"]).to_ngsi_ld()
    assert noise["LAeq"]["unitCode"] == "2N" and noise["LAeq"]["observedAt"] == "2026-11-26T08:00:00Z"
    measurement = MODELS["DeviceMeasurement"].model_validate({**BASES["DeviceMeasurement"], "numValue": 3.5,
                                                              "unit": "CEL"}).to_ngsi_ld(with_context=False)
    assert measurement["numValue"]["unitCode"] == "CEL" and "@context" not in measurement


def test_the_models_are_accepted_by_the_ngsi_ld_reader() -> None:
    from models.normalize import normalize_entity

    for name, base in BASES.items():
        entity = MODELS[name].model_validate(base)
        for representation in (Representation.NORMALIZED, Representation.CONCISE):
            normalize_entity(entity.to_ngsi_ld(representation))
