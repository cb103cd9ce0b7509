"""Expansion of entities to ENF and compaction back, with real resolved contexts (clause 5.5.7)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.context import CORE_CONTEXT_URL, ENVIRONMENT, ContextResolver
from models.expansion import compact_entity, expand_entity
from models.normalize import normalize_entity
from models.vocabulary import DEFAULT_CONTEXT_VOCAB
from tests.conftest import load_json
from tests.models.test_representation import entities

RESOLVER = ContextResolver()
ENV_URL = ENVIRONMENT.urls[0]


def test_smart_data_models_example_expands_to_environment_iris(sdm_reference: Path) -> None:
    doc = load_json(sdm_reference / "AirQualityObserved_example-normalized.jsonld")
    ctx = RESOLVER.resolve(doc.pop("@context", None) or [ENV_URL])
    enf = expand_entity(normalize_entity(doc), ctx)
    assert enf["type"] == ["https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"]
    no2 = enf["https://smartdatamodels.org/dataModel.Environment/no2"]
    assert no2 == [{"type": "Property", "value": 69, "unitCode": "GQ"}]
    # compact values stay verbatim: address keys are not expanded (as Orion-LD)
    address = enf["https://smartdatamodels.org/address"][0]["value"]
    assert address["addressLocality"] == "Madrid"
    assert compact_entity(enf, ctx) == normalize_entity(doc)


def test_same_entity_reads_in_each_clients_own_terms() -> None:
    writer = RESOLVER.resolve({"pm25": "https://smartdatamodels.org/dataModel.Environment/pm25",
                               "Station": "https://example.org/aix/Station"})
    reader = RESOLVER.resolve([ENV_URL])
    core_only = RESOLVER.resolve(None)
    doc = {"id": "urn:ngsi-ld:Station:1", "type": "Station", "pm25": {"type": "Property", "value": 12}}
    enf = expand_entity(normalize_entity(doc), writer)
    assert "https://smartdatamodels.org/dataModel.Environment/pm25" in enf
    assert "pm25" in compact_entity(enf, reader)
    # a reader without the term gets the full IRI, never a wrong short name
    assert "https://smartdatamodels.org/dataModel.Environment/pm25" in compact_entity(enf, core_only)
    assert compact_entity(enf, core_only)["type"] == "https://example.org/aix/Station"


def test_undefined_terms_use_the_default_context_vocabulary() -> None:
    ctx = RESOLVER.resolve(CORE_CONTEXT_URL)
    enf = expand_entity(normalize_entity({"id": "urn:x:1", "type": "Thing", "colour": "red"}), ctx)
    assert enf["type"] == [DEFAULT_CONTEXT_VOCAB + "Thing"]
    assert DEFAULT_CONTEXT_VOCAB + "colour" in enf
    assert compact_entity(enf, ctx) == {"id": "urn:x:1", "type": "Thing", "colour": {"type": "Property", "value": "red"}}


def test_vocab_values_and_object_types_are_expanded() -> None:
    ctx = RESOLVER.resolve({"Male": "https://schema.org/Male", "Person": "https://schema.org/Person"})
    doc = {"id": "urn:x:1", "type": "Person", "gender": {"vocab": "Male"},
           "knows": {"object": "urn:x:2", "objectType": "Person"}}
    enf = expand_entity(normalize_entity(doc), ctx)
    assert enf[DEFAULT_CONTEXT_VOCAB + "gender"][0]["vocab"] == "https://schema.org/Male"
    assert enf[DEFAULT_CONTEXT_VOCAB + "knows"][0]["objectType"] == "https://schema.org/Person"
    assert compact_entity(enf, ctx) == normalize_entity(doc)


def test_system_members_only_with_sys_attrs() -> None:
    ctx = RESOLVER.resolve(None)
    enf = {"id": "urn:x:1", "type": [DEFAULT_CONTEXT_VOCAB + "T"], "createdAt": "2026-01-01T00:00:00Z",
           DEFAULT_CONTEXT_VOCAB + "p": [{"type": "Property", "value": 1, "createdAt": "2026-01-01T00:00:00Z"}]}
    assert compact_entity(enf, ctx) == {"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1}}
    full = compact_entity(enf, ctx, sys_attrs=True)
    assert full["createdAt"] == "2026-01-01T00:00:00Z"
    assert full["p"]["createdAt"] == "2026-01-01T00:00:00Z"


contexts = st.sampled_from([None, [ENV_URL], {"@vocab": "https://example.org/aix/"}])


@settings(max_examples=200, deadline=None)
@given(entities, contexts)
def test_expand_then_compact_is_lossless(entity: dict[str, Any], context: Any) -> None:
    ctx = RESOLVER.resolve(context)
    normalized = normalize_entity(copy.deepcopy(entity))
    enf = expand_entity(normalized, ctx)
    assert all(isinstance(v, list) for k, v in enf.items() if k not in ("id", "type", "scope"))
    assert compact_entity(enf, ctx) == normalized


@settings(max_examples=200, deadline=None)
@given(entities, contexts)
def test_one_pass_normalize_to_enf_equals_normalize_then_expand(entity: dict[str, Any], context: Any) -> None:
    ctx = RESOLVER.resolve(context)
    assert normalize_entity(copy.deepcopy(entity), ctx=ctx) == expand_entity(normalize_entity(copy.deepcopy(entity)), ctx)
