"""The Smart Data Models @contexts, built from the project's term lists, against the official files."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.context import (
    DEVICE,
    ENVIRONMENT,
    SDM_ALL_CONTEXT_URL,
    SHIPPED_URLS,
    WEATHER,
    ContextResolver,
    SubjectContext,
    all_subjects_document,
    smart_data_models_document,
)
from models.vocabulary import DEFAULT_CONTEXT_VOCAB
from tests.conftest import load_json

SUBJECTS = {"Environment": ENVIRONMENT, "Weather": WEATHER, "Device": DEVICE}


def _refuse(url: str) -> bytes:
    raise AssertionError(f"Smart Data Models contexts must never be fetched, got {url}")


@pytest.fixture(scope="module")
def resolver() -> ContextResolver:
    return ContextResolver(fetch=_refuse)


@pytest.mark.parametrize("name", SUBJECTS)
def test_subject_context_equals_the_official_file_term_by_term(sdm_reference: Path, name: str) -> None:
    official = load_json(sdm_reference / f"context-dataModel.{name}.jsonld")["@context"]
    built = SUBJECTS[name].document()["@context"]
    assert sorted(built) == sorted(official)
    for term, definition in official.items():
        assert built[term] == definition, term


def test_all_subjects_context_equals_the_official_file_term_by_term(sdm_reference: Path) -> None:
    official = load_json(sdm_reference / "context-smartdatamodels-all.jsonld")["@context"]
    built = all_subjects_document()["@context"]
    assert len(built) == len(official) == 1527
    assert built == official


def test_all_subjects_context_iris_are_mostly_not_terms_jsonld(sdm_reference: Path) -> None:
    # The reference README says its terms expand to .../terms.jsonld#/definitions/<term>;
    # only about a third do, most go to https://uri.fiware.org/ns/data-models#<term>.
    built = all_subjects_document()["@context"]
    fiware = sum(1 for v in built.values() if isinstance(v, str) and v.startswith("https://uri.fiware.org/ns/data-models#"))
    terms = sum(1 for v in built.values() if isinstance(v, str) and "terms.jsonld#/definitions/" in v)
    assert (fiware, terms) == (831, 551)


@pytest.mark.parametrize("name", SUBJECTS)
def test_subject_urls_are_served_without_network(resolver: ContextResolver, name: str) -> None:
    subject: SubjectContext = SUBJECTS[name]
    assert f"https://raw.githubusercontent.com/smart-data-models/dataModel.{name}/master/context.jsonld" in subject.urls
    for url in subject.urls:
        assert url in SHIPPED_URLS
        assert smart_data_models_document(url) == subject.document()
        context = resolver.resolve(url)
        assert context.expand_term(subject.terms[0]) == f"https://smartdatamodels.org/dataModel.{name}/{subject.terms[0]}"
    http_url = subject.urls[0].replace("https://", "http://")
    assert smart_data_models_document(http_url) == subject.document()


def test_unknown_url_is_not_shipped() -> None:
    assert smart_data_models_document("https://smartdatamodels.org/dataModel.Parking/context.jsonld") is None


def test_same_term_means_different_attributes_under_the_two_families(resolver: ContextResolver) -> None:
    subject = resolver.resolve(ENVIRONMENT.urls[0])
    everything = resolver.resolve(SDM_ALL_CONTEXT_URL)
    assert subject.expand_term("no2") == "https://smartdatamodels.org/dataModel.Environment/no2"
    assert everything.expand_term("no2") == "https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/no2"
    assert subject.expand_term("AirQualityObserved") != everything.expand_term("AirQualityObserved")
    assert everything.compact_iri(everything.expand_term("no2")) == "no2"


def test_core_terms_win_over_the_all_subjects_redefinitions(resolver: ContextResolver) -> None:
    # The all-subjects context maps "properties" to ngsi-ld:properties; the core maps it to GeoJSON.
    context = resolver.resolve(SDM_ALL_CONTEXT_URL)
    assert context.expand_term("properties") == "https://purl.org/geojson/vocab#properties"
    assert "properties" in context.ignored_terms
    assert context.vocab == DEFAULT_CONTEXT_VOCAB


@pytest.mark.parametrize(
    ("model", "subject"),
    [("AirQualityObserved", ENVIRONMENT), ("NoiseLevelObserved", ENVIRONMENT), ("WeatherObserved", WEATHER),
     ("Device", DEVICE), ("DeviceModel", DEVICE), ("DeviceMeasurement", DEVICE)],
)
def test_models_of_the_platform_have_their_type_and_schema_attributes_defined(
    resolver: ContextResolver, sdm_reference: Path, model: str, subject: SubjectContext
) -> None:
    context = resolver.resolve(subject.urls[0])
    assert context.expand_term(model) == f"https://smartdatamodels.org/{subject.subject}/{model}"
    schema = load_json(sdm_reference / f"{model}_schema.json")
    names = set()
    for part in schema.get("allOf", []):
        names |= set(part.get("properties", {}))
    names -= {"id", "type"}
    assert names
    undefined = sorted(n for n in names if context.expand_term(n).startswith(DEFAULT_CONTEXT_VOCAB))
    assert undefined == [], f"{model}: schema attributes not in the {subject.subject} context"
