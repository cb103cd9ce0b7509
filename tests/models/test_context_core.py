"""The shipped NGSI-LD core @context and `Context` expansion/compaction rules (clauses 4.4, 5.5.7, Annex B)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.context import CORE_CONTEXT_URL, ContextResolver, core_document, is_core_context_url
from models.context.core import PUBLISHED_ONLY_TERMS, build_core_document, extract_annex_b
from models.errors import BadRequestData
from models.vocabulary import DEFAULT_CONTEXT_VOCAB, NGSI_LD_NS
from tests.conftest import load_json

# Terms of Annex B (V1.9.1) that the file published at the -v1.9 URL lacks: that file is
# identical to the v1.8 one, so everything V1.9 added (snapshots, aggregation parameters,
# ordering, proofs, valueType ...) is missing from it.
ANNEX_B_ONLY = {
    "ExecutionResultDetails", "Snapshot", "SnapshotNotification", "aggrMethods", "aggrParams",
    "aggrPeriodDuration", "collation", "langString", "lastUsedAt", "ngsildproof", "objectLists",
    "orderBy", "ordering", "problemDetails", "resultStatus", "snapshotId", "snapshotLifetime",
    "snapshotPriority", "snapshotQueries", "snapshotQueriesDetails", "snapshotStatus",
    "snapshotTemporalQueries", "snapshotTemporalQueriesDetails", "valueType",
}


def _refuse(url: str) -> bytes:
    raise AssertionError(f"the core context must never be fetched, got {url}")


@pytest.fixture(scope="module")
def resolver() -> ContextResolver:
    return ContextResolver(fetch=_refuse)


def _annex_b(ngsi_ld_reference: Path) -> str:
    return (ngsi_ld_reference / "spec-v1.9.1" / "B" / "B.md").read_text(encoding="utf-8")


def test_shipped_file_is_what_the_script_builds_from_annex_b(ngsi_ld_reference: Path) -> None:
    assert core_document() == build_core_document(_annex_b(ngsi_ld_reference))


def test_annex_b_terms_are_all_shipped_verbatim(ngsi_ld_reference: Path) -> None:
    annex = extract_annex_b(_annex_b(ngsi_ld_reference))["@context"]
    shipped = core_document()["@context"]
    assert len(annex) == 206
    assert {k: shipped[k] for k in annex} == annex
    assert annex["@vocab"] == DEFAULT_CONTEXT_VOCAB  # Annex B itself has the 5.5.7 fallback


def test_differences_with_the_published_v1_9_file_are_the_known_ones(ngsi_ld_reference: Path) -> None:
    published = load_json(ngsi_ld_reference / "contexts" / "ngsi-ld-core-context-v1.9.jsonld")["@context"]
    shipped = core_document()["@context"]
    v18 = load_json(ngsi_ld_reference / "contexts" / "ngsi-ld-core-context-v1.8.jsonld")["@context"]
    assert published == v18, "the published v1.9 file is the v1.8 one"
    assert set(shipped) - set(published) == ANNEX_B_ONLY
    assert set(published) - set(shipped) == set()  # published-only terms are added to the shipped file
    assert {k: published[k] for k in PUBLISHED_ONLY_TERMS} == PUBLISHED_ONLY_TERMS
    # Every term the published file defines means the same thing in the shipped one.
    assert {k: shipped[k] for k in published} == published
    assert shipped["@vocab"] == published["@vocab"] == DEFAULT_CONTEXT_VOCAB


@pytest.mark.parametrize(
    "url",
    [
        CORE_CONTEXT_URL,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
        "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
        "https://uri.etsi.org/ngsi-ld/ngsi-ld-core-context-v1.9.jsonld",
    ],
)
def test_every_core_url_is_served_from_the_shipped_file(resolver: ContextResolver, url: str) -> None:
    assert is_core_context_url(url)
    context = resolver.resolve(url)
    assert context.expand_term("Property") == NGSI_LD_NS + "Property"
    assert context.terms.keys() == resolver.resolve(None).terms.keys()
    assert resolver.load_document(url) == core_document()


@pytest.mark.parametrize(
    "url",
    [
        "https://uri.etsi.org/ngsi-ld/v1/other-context.jsonld",
        "https://example.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld.bak",
    ],
)
def test_other_urls_are_not_core(url: str) -> None:
    assert not is_core_context_url(url)


def test_core_expansions(resolver: ContextResolver) -> None:
    core = resolver.resolve(None)
    assert core.expand_term("value") == NGSI_LD_NS + "hasValue"
    assert core.expand_term("GeoProperty") == NGSI_LD_NS + "GeoProperty"
    assert core.expand_term("Point") == "https://purl.org/geojson/vocab#Point"
    assert core.expand_term("id") == "@id" and core.expand_term("type") == "@type"
    # "attributeCount": "attributeCount" maps a term to itself, which JSON-LD expands with @vocab.
    assert core.expand_term("attributeCount") == DEFAULT_CONTEXT_VOCAB + "attributeCount"
    assert core.expand_term("temperature") == DEFAULT_CONTEXT_VOCAB + "temperature"
    assert core.expand_term("ngsi-ld:temperature") == NGSI_LD_NS + "temperature"
    assert core.expand_term("urn:ngsi-ld:thing") == "urn:ngsi-ld:thing"
    assert core.expand_term("https://example.org/t") == "https://example.org/t"
    assert core.terms["createdAt"].type == NGSI_LD_NS + "DateTime"


def test_core_compactions(resolver: ContextResolver) -> None:
    core = resolver.resolve(None)
    assert core.compact_iri(NGSI_LD_NS + "hasObject") == "object"
    assert core.compact_iri("@type") == "type"
    assert core.compact_iri(DEFAULT_CONTEXT_VOCAB + "temperature") == "temperature"
    assert core.compact_iri(NGSI_LD_NS + "somethingNew") == "ngsi-ld:somethingNew"
    assert core.compact_iri("https://example.org/t") == "https://example.org/t"


def test_user_context_cannot_redefine_core_terms(resolver: ContextResolver) -> None:
    user = {"value": "https://example.org/myValue", "Property": "https://example.org/P", "speed": "https://example.org/speed"}
    for value in (user, [user, CORE_CONTEXT_URL], [CORE_CONTEXT_URL, user]):
        context = resolver.resolve(value)
        assert context.expand_term("value") == NGSI_LD_NS + "hasValue"
        assert context.expand_term("Property") == NGSI_LD_NS + "Property"
        assert context.expand_term("speed") == "https://example.org/speed"
        assert context.ignored_terms == {"value", "Property"}
        assert context.source is value


def test_user_vocab_wins_over_the_default_context(resolver: ContextResolver) -> None:
    context = resolver.resolve({"@vocab": "https://example.org/ns/"})
    assert context.expand_term("speed") == "https://example.org/ns/speed"
    assert context.compact_iri("https://example.org/ns/speed") == "speed"
    assert context.compact_iri(DEFAULT_CONTEXT_VOCAB + "speed") == "ngsi-ld:default-context/speed"


def test_user_context_uses_core_and_own_prefixes(resolver: ContextResolver) -> None:
    context = resolver.resolve(
        {"ex": "https://example.org/ns#", "speed": "ex:speed", "mine": "ngsi-ld:mine", "Car": {"@id": "ex:Car"}}
    )
    assert context.expand_term("speed") == "https://example.org/ns#speed"
    assert context.expand_term("mine") == NGSI_LD_NS + "mine"
    assert context.expand_term("Car") == "https://example.org/ns#Car"
    assert context.expand_term("ex:other") == "https://example.org/ns#other"
    assert context.compact_iri("https://example.org/ns#other") == "ex:other"
    assert context.compact_iri(NGSI_LD_NS + "mine") == "mine"  # the user's term, not "ngsi-ld:mine"


def test_compaction_prefers_user_term_then_shortest(resolver: ContextResolver) -> None:
    context = resolver.resolve({"speedy": "https://example.org/s", "sp": "https://example.org/s", "obj": NGSI_LD_NS + "hasObject"})
    assert context.compact_iri("https://example.org/s") == "sp"
    assert context.compact_iri(NGSI_LD_NS + "hasObject") == "obj"


def test_vocab_coerced_values(resolver: ContextResolver) -> None:
    context = resolver.resolve({"Car": "https://example.org/Car", "colour": {"@id": "https://example.org/colour", "@type": "@vocab"}})
    assert context.is_vocab_coerced("attributes") and context.is_vocab_coerced("vocab")
    assert context.is_vocab_coerced("colour") and not context.is_vocab_coerced("value")
    assert context.expand_value("vocab", "Car") == "https://example.org/Car"
    assert context.expand_value("attributes", ["Car", "red"]) == ["https://example.org/Car", DEFAULT_CONTEXT_VOCAB + "red"]
    assert context.compact_value("attributes", ["https://example.org/Car", DEFAULT_CONTEXT_VOCAB + "red"]) == ["Car", "red"]
    assert context.expand_value("value", "Car") == "Car"


@pytest.mark.parametrize(
    "bad",
    [
        {"speed": {"@id": "https://example.org/speed", "@context": {"x": "https://example.org/x"}}},
        {"speed": 3},
        {"a": "b", "b": "a"},
        [["https://example.org/c.jsonld"]],
        42,
    ],
    ids=["scoped-context", "number-definition", "cyclic", "nested-list", "number"],
)
def test_invalid_user_contexts_are_bad_request_data(resolver: ContextResolver, bad: object) -> None:
    with pytest.raises(BadRequestData):
        resolver.resolve(bad)


def test_expand_term_is_memoised(resolver: ContextResolver) -> None:
    context = resolver.resolve({"speed": "https://example.org/speed"})
    first = context.expand_term("speed")
    assert context.expand_term("speed") is first
    assert resolver.resolve({"speed": "https://example.org/speed"}) is context


# Clause 4.6.2: name = unicodeLetter *(unicodeLetter / unicodeNumber / "_")
_letter = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo"))
_name_char = st.one_of(_letter, st.characters(categories=("Nd", "Nl", "No")), st.just("_"))
names = st.builds(lambda first, rest: first + "".join(rest), _letter, st.lists(_name_char, max_size=12))
user_contexts = st.fixed_dictionaries(
    {
        "terms": st.lists(names, max_size=8, unique=True),
        "base": st.sampled_from(["https://example.org/ns/", "urn:x:", "https://w3id.org/t#"]),
        "vocab": st.one_of(st.none(), st.sampled_from(["https://example.org/v/", "https://other.example/vocab#"])),
    }
)


@settings(max_examples=300, deadline=None)
@given(term=names, spec=user_contexts)
def test_compact_inverts_expand(resolver: ContextResolver, term: str, spec: dict) -> None:
    local: dict[str, str] = {t: spec["base"] + t for t in spec["terms"]}
    if spec["vocab"] is not None:
        local["@vocab"] = spec["vocab"]
    context = resolver.resolve(local)
    assert context.compact_iri(context.expand_term(term)) == term
    for defined in spec["terms"]:
        assert context.compact_iri(context.expand_term(defined)) == defined


def test_core_document_is_a_copy() -> None:
    document = core_document()
    document["@context"]["value"] = "x"
    assert core_document()["@context"]["value"] == "ngsi-ld:hasValue"
    assert json.dumps(core_document())
