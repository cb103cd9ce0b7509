"""Representations of clause 4.5: normalized, concise, simplified, on annex C's own examples and generated entities."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import BadRequestData, InvalidAttribute, InvalidGeometry, InvalidUri
from models.normalize import normalize_entity
from models.representation import Representation, from_simplified, to_concise, to_simplified

EXAMPLES = json.loads((Path(__file__).parent / "data" / "annex_c_examples.json").read_text())
NAMES = [k for k in EXAMPLES if not k.startswith("_")]


@pytest.mark.parametrize("name", NAMES)
def test_annex_c_normalized_to_concise(name: str) -> None:
    assert to_concise(normalize_entity(EXAMPLES[name]["normalized"])) == EXAMPLES[name]["concise"]


@pytest.mark.parametrize("name", NAMES)
def test_annex_c_concise_reads_back_as_normalized(name: str) -> None:
    assert normalize_entity(EXAMPLES[name]["concise"]) == EXAMPLES[name]["normalized"]


@pytest.mark.parametrize("name", NAMES)
def test_annex_c_simplified(name: str) -> None:
    assert to_simplified(normalize_entity(EXAMPLES[name]["normalized"])) == EXAMPLES[name]["simplified"]


def test_annex_c_language_filter_in_simplified() -> None:
    vehicle = normalize_entity(EXAMPLES["vehicle"]["normalized"])
    assert to_simplified(vehicle, lang="fr") == EXAMPLES["vehicle"]["simplified_lang_fr"]
    assert to_simplified(vehicle, lang="nl")["street"] == "Grote Markt"
    assert to_simplified(vehicle, lang="de;q=0.9,nl;q=0.5")["street"] == "Grote Markt"


def test_simplified_reads_back_as_properties() -> None:
    parking = from_simplified(EXAMPLES["parking"]["simplified"])
    assert parking["location"]["type"] == "GeoProperty"
    assert parking["name"] == {"type": "Property", "value": "Downtown One"}
    multi = from_simplified(EXAMPLES["vehicle_multi_attribute"]["simplified"])
    assert [i["value"] for i in multi["speed"]] == [55, 54.5]
    assert all("datasetId" in i for i in multi["speed"])


def test_representation_from_options() -> None:
    assert Representation.from_options({"keyValues"}) is Representation.SIMPLIFIED
    assert Representation.from_options({"concise", "sysAttrs"}) is Representation.CONCISE
    assert Representation.from_options(set(), "simplified") is Representation.SIMPLIFIED
    assert Representation.from_options({"keyValues"}, "normalized") is Representation.NORMALIZED


def test_property_whose_value_looks_like_geometry_keeps_its_type_in_concise() -> None:
    # A plain Property holding GeoJSON would be read back as a GeoProperty
    # (clause 4.7.3), so concise must keep "type" to stay lossless.
    entity = {"id": "urn:x:1", "type": "T", "shape": {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}}}
    concise = to_concise(normalize_entity(entity))
    assert concise["shape"] == {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}}
    assert normalize_entity(concise) == entity


def test_compound_value_with_type_member_stays_wrapped() -> None:
    entity = {"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": {"type": "Sensor", "n": 1}}}
    concise = to_concise(normalize_entity(entity))
    assert concise["p"] == {"value": {"type": "Sensor", "n": 1}}
    assert normalize_entity(concise) == entity


# --- invalid input gets precise, typed errors -------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "error", "fragment"),
    [
        ({"id": "not a uri", "type": "T"}, InvalidUri, "entity id"),
        ({"type": "T"}, BadRequestData, "no id"),
        ({"id": "urn:x:1"}, BadRequestData, "no type"),
        ({"id": "urn:x:1", "type": "1abc"}, BadRequestData, "not a valid NGSI-LD name"),
        ({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship"}}, InvalidAttribute, "'object'"),
        ({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": "nope"}}, InvalidUri, "object"),
        ({"id": "urn:x:1", "type": "T", "p": {"type": "Property"}}, InvalidAttribute, "no value"),
        ({"id": "urn:x:1", "type": "T", "p": {"type": "Propertie", "value": 1}}, InvalidAttribute, "unknown type"),
        ({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1, "object": "urn:a:b"}}, InvalidAttribute, "'object'"),
        ({"id": "urn:x:1", "type": "T", "loc": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 1]}}}, InvalidGeometry, ""),
        ({"id": "urn:x:1", "type": "T", "loc": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}}}, InvalidGeometry, ""),
        ({"id": "urn:x:1", "type": "T", "p": {"value": 1, "observedAt": "yesterday"}}, BadRequestData, "observedAt"),
        ({"id": "urn:x:1", "type": "T", "p": {"value": 1, "datasetId": "ds 1"}}, InvalidUri, "datasetId"),
        ({"id": "urn:x:1", "type": "T", "r": {"object": "urn:a:b", "unitCode": "CEL"}}, InvalidAttribute, "unitCode"),
        ({"id": "urn:x:1", "type": "T", "l": {"languageMap": {"fr fr": "x"}}}, BadRequestData, "language tag"),
        ({"id": "urn:x:1", "type": "T", "l": {"languageMap": {"fr": 3}}}, BadRequestData, "languageMap"),
        ({"id": "urn:x:1", "type": "T", "p": [{"value": 1}, {"value": 2}]}, BadRequestData, "more than once"),
        ({"id": "urn:x:1", "type": "T", "p": None}, InvalidAttribute, "null"),
        ({"id": "urn:x:1", "type": "T", "bad name": 1}, BadRequestData, "attribute name"),
        ({"id": "urn:x:1", "type": "T", "scope": "no-slash"}, BadRequestData, "scope"),
        ([], BadRequestData, "JSON object"),
    ],
)
def test_invalid_input_is_rejected_with_the_right_error(doc: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        normalize_entity(doc)
    assert fragment in str(info.value)
    problem = info.value.to_problem()  # type: ignore[attr-defined]
    assert problem["status"] == 400
    assert problem["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")


def test_null_is_accepted_only_where_allowed() -> None:
    doc = {"id": "urn:x:1", "type": "T", "p": {"value": "urn:ngsi-ld:null"}, "r": {"object": "urn:ngsi-ld:null"},
           "l": {"languageMap": {"@none": "urn:ngsi-ld:null"}}}
    out = normalize_entity(doc, allow_null=True)
    assert out["p"]["value"] == "urn:ngsi-ld:null"
    assert out["r"]["object"] == "urn:ngsi-ld:null"
    assert out["l"]["languageMap"] == {"@none": "urn:ngsi-ld:null"}
    with pytest.raises(InvalidAttribute, match="null"):
        normalize_entity({"id": "urn:x:1", "type": "T", "l": {"languageMap": {"@none": "urn:ngsi-ld:null"}}})


@pytest.mark.parametrize("attribute", [None, {"value": None}, {"type": "Property", "value": None}])
def test_json_null_is_never_a_value(attribute: Any) -> None:
    # clauses 4.5.0 and 5.2.1: JSON null cannot be a value, not even in a merge or partial update
    with pytest.raises(InvalidAttribute, match="JSON null"):
        normalize_entity({"id": "urn:x:1", "type": "T", "p": attribute}, allow_null=True)


# --- property-based: normalized -> concise -> normalized is lossless --------------------------

_letters = st.characters(whitelist_categories=("Lu", "Ll"), max_codepoint=0x24F)
names = st.builds(lambda a, b: a + b, st.text(_letters, min_size=1, max_size=1),
                  st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x24F), max_size=8))
uris = st.builds(lambda s: f"urn:ngsi-ld:Thing:{s}", st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10))
datetimes = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.replace(microsecond=0).isoformat().replace("+00:00", "Z")
)
scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(max_size=10), st.booleans())
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), inner, max_size=3)), max_leaves=6)
points = st.tuples(st.floats(-180, 180), st.floats(-90, 90)).map(lambda p: {"type": "Point", "coordinates": list(p)})


def _instance(kind: str, value: Any, extras: dict[str, Any]) -> dict[str, Any]:
    member = {"Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty": "languageMap",
              "VocabProperty": "vocab", "JsonProperty": "json", "ListProperty": "valueList",
              "ListRelationship": "objectList"}[kind]
    out = {"type": kind, member: value}
    if kind in ("Relationship", "ListRelationship", "VocabProperty", "LanguageProperty"):
        extras = {k: v for k, v in extras.items() if k != "unitCode"}
    out.update(extras)
    return out


def attribute_instances(depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    extras = st.fixed_dictionaries({}, optional={"observedAt": datetimes, "unitCode": st.sampled_from(["CEL", "GQ", "2N"])})
    kinds = st.one_of(
        st.tuples(st.just("Property"), json_values),
        st.tuples(st.just("GeoProperty"), points),
        st.tuples(st.just("Relationship"), st.one_of(uris, st.lists(uris, min_size=1, max_size=3))),
        st.tuples(st.just("LanguageProperty"), st.dictionaries(st.sampled_from(["fr", "en", "oc", "@none"]), st.text(max_size=5), min_size=1)),
        st.tuples(st.just("VocabProperty"), names),
        st.tuples(st.just("JsonProperty"), json_values),
        st.tuples(st.just("ListProperty"), st.lists(scalars, max_size=4)),
        st.tuples(st.just("ListRelationship"), st.lists(uris.map(lambda u: {"object": u}), max_size=3)),
    )
    base = st.builds(lambda kv, ex: _instance(kv[0], kv[1], ex), kinds, extras)
    if depth == 0:
        return base
    subs = st.dictionaries(names, attribute_instances(depth - 1), max_size=2)
    return st.builds(lambda inst, sub: {**inst, **{k: v for k, v in sub.items() if k not in inst}}, base, subs)


def _multi(instances: list[dict[str, Any]]) -> Any:
    if len(instances) == 1:
        return instances[0]
    out = []
    for i, inst in enumerate(instances):
        inst = dict(inst)
        if i:
            inst["datasetId"] = f"urn:ngsi-ld:Dataset:{i}"
        out.append(inst)
    return out


entities = st.builds(
    lambda eid, etype, attrs: {"id": eid, "type": etype, **attrs},
    uris,
    st.one_of(names, st.lists(names, min_size=2, max_size=3, unique=True)),
    st.dictionaries(names.filter(lambda n: n not in {"id", "type", "scope"}),
                    st.lists(attribute_instances(), min_size=1, max_size=3).map(_multi), max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(entities)
def test_normalized_concise_normalized_is_lossless(entity: dict[str, Any]) -> None:
    normalized = normalize_entity(copy.deepcopy(entity))
    concise = to_concise(normalized)
    assert normalize_entity(concise) == normalized
    # concise is a fixed point: converting again changes nothing
    assert to_concise(normalize_entity(concise)) == concise


@settings(max_examples=200, deadline=None)
@given(entities)
def test_normalizing_twice_changes_nothing(entity: dict[str, Any]) -> None:
    once = normalize_entity(copy.deepcopy(entity))
    assert normalize_entity(copy.deepcopy(once)) == once


@settings(max_examples=200, deadline=None)
@given(entities)
def test_simplified_keeps_every_own_attribute_and_nothing_else(entity: dict[str, Any]) -> None:
    normalized = normalize_entity(copy.deepcopy(entity))
    simplified = to_simplified(normalized)
    assert set(simplified) == set(normalized)
    for name, value in normalized.items():
        if isinstance(value, dict) and value.get("type") in ("Property", "GeoProperty") and "datasetId" not in value:
            assert simplified[name] == value["value"]
