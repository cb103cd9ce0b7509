"""Compiled normalization plans (models.normalize._entity_plan) against the uncompiled reference.

`normalize_entity` compiles, per entity shape and @context, what it decides from the shape alone;
these tests hold it to `normalize_entity_uncompiled` byte for byte: the same document (key order
included, as orjson writes it) or the same error class and ProblemDetails. Entities run in
sequence, so a plan compiled from one entity is applied to the next ones of other values and
other attribute shapes under the same top-level members.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import normalize as norm
from models.context.resolver import ContextResolver
from models.errors import NgsiLdError
from models.normalize import normalize_entity, normalize_entity_uncompiled

RESOLVER = ContextResolver()
CONTEXTS: dict[str, Any] = {
    "none": None,
    "core": RESOLVER.resolve(None),
    "sdm": RESOLVER.resolve("https://smartdatamodels.org/context.jsonld"),
    "inline": RESOLVER.resolve([{"ex": "https://example.org/ns#", "no2": "ex:nitrogenDioxide",
                                 "Sensor": "ex:Sensor", "kind": {"@id": "ex:kind", "@type": "@vocab"}}]),
}


def outcome(fn: Any, doc: Any, ctx: Any, **flags: Any) -> tuple[str, Any]:
    """("ok", the JSON bytes) or ("error", class name, ProblemDetails) of one normalization."""
    try:
        return "ok", orjson.dumps(fn(copy.deepcopy(doc), ctx=ctx, **flags))
    except NgsiLdError as error:
        return "error", (type(error).__name__, error.to_problem())


def check_same(docs: list[Any], ctx: Any, **flags: Any) -> list[tuple[str, Any]]:
    """Normalize `docs` in order both ways; assert every outcome is the same; return them."""
    outcomes = []
    for doc in docs:
        expected = outcome(normalize_entity_uncompiled, doc, ctx, **flags)
        got = outcome(normalize_entity, doc, ctx, **flags)
        assert got == expected, (doc, got, expected)
        outcomes.append(got)
    return outcomes


def aqo(i: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{i}",
        "type": "AirQualityObserved",
        "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-11-26T06:00:00Z"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29]}},
        "no2": {"type": "Property", "value": 41.5 + i, "observedAt": "2026-11-26T06:00:00Z", "unitCode": "GQ"},
        "name": {"type": "LanguageProperty", "languageMap": {"fr": "Vieux-Port", "en": "Old Port"}},
        "category": {"type": "VocabProperty", "vocab": "kind"},
        "readings": {"type": "ListProperty", "valueList": [1, 2, 3]},
        "raw": {"type": "JsonProperty", "json": {"a": [1, {"b": None}]}},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{i}", "objectType": "Device",
                      "datasetId": "urn:ngsi-ld:Dataset:a",
                      "reliability": {"type": "Property", "value": 0.9,
                                      "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Org:1"}}},
        "members": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:X:1"}, "urn:ngsi-ld:X:2"]},
        "https://example.org/ns#expanded": {"type": "Property", "value": "full IRI name"},
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not DROP}


DROP: Any = object()

VALID = [
    aqo(1),
    aqo(2),
    aqo(3, no2={"type": "Property", "value": 7, "unitCode": "GQ"}),  # another shape, same name
    aqo(4, no2=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:D:2"}]),
    aqo(5, no2=12.5),  # concise
    aqo(6, no2={"value": 12.5, "observedAt": "2026-11-26T06:00:00+01:00"}),
    aqo(7, location={"type": "Point", "coordinates": [5.0, 43.0, 12]}),  # concise GeoProperty
    aqo(8, location={"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}),
    aqo(9, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5, 43], "bbox": [5, 43, 5, 43]}}),
    aqo(10, location={"type": "GeoProperty", "value": '{"type": "Point", "coordinates": [5, 43]}'}),
    aqo(11, type=["AirQualityObserved", "Sensor", "AirQualityObserved"]),
    aqo(12, type="https://example.org/ns#Thing"),
    aqo(13, refDevice={"type": "Relationship", "object": ["urn:ngsi-ld:D:1", "urn:ngsi-ld:D:2"]}),
    aqo(14, no2={"type": "Property", "value": "urn:ngsi-ld:null"}),
    aqo(15, name={"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}),
    aqo(16, readings={"type": "ListProperty", "valueList": ["urn:ngsi-ld:null"]}),
    aqo(17, category={"type": "VocabProperty", "vocab": ["kind", "Sensor"]}),
    aqo(18, no2={"type": "Property", "value": True, "observedAt": "2026-11-26T06:00:00.123456Z", "unitCode": "GQ"}),
    aqo(19, no2={"type": "Property", "value": None, "observedAt": "2026-11-26T06:00:00Z", "unitCode": "GQ"}),
]
INVALID = [
    aqo(30, id="not a uri"),
    aqo(31, id=DROP),
    aqo(32, type=DROP),
    aqo(33, type="1bad"),
    aqo(34, type=[]),
    aqo(35, no2={"type": "Property", "value": 1, "observedAt": "yesterday", "unitCode": "GQ"}),
    aqo(36, no2={"type": "Property", "value": 1, "observedAt": "2026-11-26T06:00:00Z", "unitCode": ""}),
    aqo(37, no2={"type": "Property", "value": {"@type": "DateTime"}, "observedAt": "2026-11-26T06:00:00Z", "unitCode": "GQ"}),
    aqo(38, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 43.29]}}),
    aqo(39, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, True]}}),
    aqo(40, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29, 1, 2]}}),
    aqo(41, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [float("nan"), 43.29]}}),
    aqo(42, refDevice={"type": "Relationship", "object": "no uri", "objectType": "Device",
                       "datasetId": "urn:ngsi-ld:Dataset:a", "reliability": {"type": "Property", "value": 0.9}}),
    aqo(43, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:D:1", "objectType": "Device",
                       "datasetId": "no uri", "reliability": {"type": "Property", "value": 0.9}}),
    aqo(44, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:D:1", "objectType": "Device",
                       "datasetId": "urn:ngsi-ld:Dataset:a",
                       "reliability": {"type": "Property", "value": 0.9,
                                       "providedBy": {"type": "Relationship", "object": "nope"}}}),
    aqo(45, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:D:1", "objectType": "1Device",
                       "datasetId": "urn:ngsi-ld:Dataset:a", "reliability": {"type": "Property", "value": 0.9}}),
    aqo(46, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:D:1", "unitCode": "GQ"}),
    aqo(47, no2={"type": "Property", "value": 1, "objectType": "Device"}),
    aqo(48, no2={"type": "Property", "object": "urn:ngsi-ld:D:1"}),
    aqo(49, no2={"type": "Property", "value": 1, "object": "urn:ngsi-ld:D:1"}),
    aqo(50, no2={"type": "Propertee", "value": 1}),
    aqo(51, no2={"type": "Property", "value": "urn:ngsi-ld:null"}),  # null without allow_null
    aqo(52, name={"type": "LanguageProperty", "languageMap": {"not a tag!": "x"}}),
    aqo(53, readings={"type": "ListProperty", "valueList": 3}),
    aqo(54, category={"type": "VocabProperty", "vocab": ""}),
    aqo(55, members={"type": "ListRelationship", "objectList": ["no uri"]}),
    aqo(56, no2=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]),  # datasetId twice
    aqo(57, **{"1bad": {"type": "Property", "value": 1}}),
    aqo(58, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:D:1", "objectType": "Device",
                       "datasetId": "urn:ngsi-ld:Dataset:a", "1bad": {"type": "Property", "value": 0.9}}),
    aqo(59, no2={"type": "Property", "value": 1, "observedAt": 20261126, "unitCode": "GQ"}),
    aqo(60, scope="no/slash"),
    aqo(61, no2=None),
    aqo(62, no2={"type": "Property", "value": 1, "observedAt": "2026-11-26T06:00:00Z", "unitCode": 7}),
    aqo(63, createdAt="never"),
    aqo(64, type="type"),
    aqo(65, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29], "bbox": "x"}}),
    aqo(66, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29, 2**60]}}),
    aqo(67, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 95.0]}}),
    aqo(68, location={"type": "GeoProperty", "value": {"type": "Point"}}),
]


@pytest.fixture(autouse=True)
def fresh_plans() -> None:
    norm._PLANS.clear()


@pytest.mark.parametrize("ctx_name", list(CONTEXTS))
@pytest.mark.parametrize("allow_null", [False, True])
def test_table_of_entities_gives_the_same_documents_and_errors(ctx_name: str, allow_null: bool) -> None:
    ctx = CONTEXTS[ctx_name]
    # valid and invalid interleaved: plans are compiled from some, applied to the others
    docs = [d for pair in zip(VALID * 2, INVALID, strict=False) for d in pair] + VALID + INVALID
    outcomes = check_same(docs, ctx, allow_null=allow_null)
    assert any(o[0] == "ok" for o in outcomes) and any(o[0] == "error" for o in outcomes)
    assert norm._PLANS, "entities of these shapes must take compiled plans"


def test_a_plan_compiled_from_an_invalid_entity_serves_valid_ones() -> None:
    ctx = CONTEXTS["sdm"]
    first = check_same([aqo(35, no2={"type": "Property", "value": 1, "observedAt": "yesterday", "unitCode": "GQ"}),
                        aqo(1)], ctx)
    assert first[0][0] == "error" and first[1][0] == "ok"


def test_fragments_scope_and_entity_times() -> None:
    ctx = CONTEXTS["sdm"]
    frags = [{"no2": {"type": "Property", "value": 1}}, {"no2": {"value": 2}}, {"no2": "urn:ngsi-ld:null"}]
    check_same(frags, ctx, require_id=False, require_type=False, allow_null=True)
    check_same(frags, ctx, require_id=False, require_type=False)
    scoped = [aqo(i, scope=s, createdAt="2026-01-01T00:00:00Z") for i, s in
              enumerate(["/Marseille", ["/Aix", "/Aix/Centre"], "/", "Marseille/", "/Aix/"])]
    check_same(scoped, ctx)
    with_context = [{**aqo(1), "@context": "https://smartdatamodels.org/context.jsonld"}] * 2
    check_same(with_context, None)
    check_same(with_context, ctx)


def test_the_same_shape_under_two_contexts_expands_each_its_own_way() -> None:
    doc = aqo(1)
    sdm = normalize_entity(doc, ctx=CONTEXTS["sdm"])
    inline = normalize_entity(doc, ctx=CONTEXTS["inline"])
    assert "https://example.org/ns#nitrogenDioxide" in inline and "https://example.org/ns#nitrogenDioxide" not in sdm
    assert sdm["type"] != inline["type"]
    check_same([doc], CONTEXTS["inline"])
    check_same([doc], CONTEXTS["sdm"])


# ------------------------------------------------------------------ property-based

_names = st.sampled_from(["no2", "temperature", "ex:kind", "https://example.org/ns#x", "name", "location"] * 3 + ["1bad"])
_datetimes = st.sampled_from(["2026-11-26T06:00:00Z"] * 6 + ["2026-11-26T06:00", "2026-13-40T06:00:00Z", "now", 5])
_uris = st.sampled_from(["urn:ngsi-ld:D:1", "https://example.org/a"] * 4 + ["no uri", "", 3])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                     st.text(max_size=5), st.just("urn:ngsi-ld:null"))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["@type", "@value", "a", "type", "coordinates"]), inner, max_size=3)),
                     max_leaves=6)
_numbers = st.one_of(st.floats(-180, 180), st.integers(-90, 90))
_coordinates = st.one_of(st.lists(_numbers, min_size=2, max_size=3),  # mostly valid positions
                         st.lists(st.one_of(_numbers, st.floats(-200, 200), st.booleans(), st.just(float("inf")),
                                            st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=4))
_points = st.builds(lambda c, extra: {"type": "Point", "coordinates": c, **extra}, _coordinates,
                    st.sampled_from([{}, {}, {"bbox": [0, 0, 1, 1]}, {"bbox": "x"}, {"crs": 1}]))
_values = st.one_of(_json, _points)
_members = st.fixed_dictionaries({}, optional={
    "observedAt": _datetimes, "unitCode": st.sampled_from(["GQ"] * 6 + ["", 4]), "datasetId": _uris,
    "objectType": st.sampled_from(["Device"] * 4 + ["1bad", ["Device", "Org"]]), "instanceId": _uris,
    "valueType": st.just("xsd:float"), "lang": st.just("fr"), "previousValue": _scalars,
})
_kinds = st.sampled_from([
    ("Property", "value", _values), ("GeoProperty", "value", _points),
    ("Relationship", "object", st.one_of(_uris, st.lists(_uris, max_size=2))),
    ("LanguageProperty", "languageMap", st.dictionaries(st.sampled_from(["fr", "en", "@none", "bad tag"]),
                                                        st.one_of(st.text(max_size=3), st.just("urn:ngsi-ld:null"),
                                                                  st.integers()), max_size=2)),
    ("VocabProperty", "vocab", st.one_of(st.sampled_from(["kind", "Sensor", ""]), st.lists(st.sampled_from(["kind", 1]), max_size=2))),
    ("JsonProperty", "json", _json),
    ("ListProperty", "valueList", st.one_of(st.lists(_scalars, max_size=3), _scalars)),
    ("ListRelationship", "objectList", st.lists(st.one_of(_uris, st.builds(lambda u: {"object": u}, _uris)), max_size=2)),
])


@st.composite
def _attribute_of(draw: Any, subs: Any) -> Any:
    """An attribute in any form (normalized, concise, bare value), members in any order, with `subs`."""
    attr_type, member, value = draw(_kinds)
    form = draw(st.sampled_from(["normalized", "normalized", "normalized", "concise", "bare"]))
    if form == "bare":
        return draw(_values)
    out: dict[str, Any] = {}
    if form == "normalized":
        out["type"] = draw(st.sampled_from([attr_type] * 12 + ["Propertee", "Property"]))
    out[member] = draw(value)
    out.update(draw(_members))
    if subs is not None:
        for name in draw(st.lists(_names, max_size=2, unique=True)):
            out[name] = draw(subs)
    return {k: out[k] for k in draw(st.permutations(list(out)))}


_leaf = _attribute_of(None)
_attribute = _attribute_of(_leaf)


_entity_members = st.lists(_names, min_size=1, max_size=4, unique=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(list(CONTEXTS)), st.booleans())
def test_random_entities_of_shared_shapes(data: Any, ctx_name: str, allow_null: bool) -> None:
    names = data.draw(_entity_members)  # one set of members for the run: its plan is reused
    docs = []
    for i in range(data.draw(st.integers(2, 6))):
        doc: dict[str, Any] = {"id": data.draw(st.sampled_from([f"urn:ngsi-ld:T:{i}"] * 8 + ["bad id"])),
                               "type": data.draw(st.sampled_from(["Sensor"] * 6 + [["Sensor", "Thing"], "1bad"]))}
        for name in names:
            doc[name] = data.draw(st.one_of(_attribute, _attribute, st.lists(_leaf, min_size=1, max_size=2)))
        docs.append(doc)
    check_same(docs, CONTEXTS[ctx_name], allow_null=allow_null)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_attribute, min_size=2, max_size=6), st.sampled_from(list(CONTEXTS)), st.booleans())
def test_random_attributes_one_at_a_time(attributes: list[Any], ctx_name: str, allow_null: bool) -> None:
    # one attribute per entity, so that no other attribute's error hides a difference in this one
    docs = [{"id": f"urn:ngsi-ld:T:{i}", "type": "Sensor", "no2": a} for i, a in enumerate(attributes)]
    check_same(docs, CONTEXTS[ctx_name], allow_null=allow_null)
