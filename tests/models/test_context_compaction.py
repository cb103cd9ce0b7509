"""IRI compaction (JSON-LD 1.1 Processing Algorithms and API, 4.6.2 IRI Compaction) on test vectors.

Every expected value below is what an independent JSON-LD 1.1 processor
(PyLD 2.0.4, `jsonld.compact`) answers for the same context and IRI; the
vectors are kept here so that the platform never needs PyLD.
"""

from __future__ import annotations

import pytest

from models.context import SDM_ALL_CONTEXT_URL, ContextResolver

CORE_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
SDM_NO2 = "https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/no2"

VECTORS = [
    # (local context, IRI, compacted)
    # step 4: @vocab first, when no term has the suffix's name
    (None, CORE_VOCAB + "no2", "no2"),
    ({"a": "http://ex.org/"}, CORE_VOCAB + "foo", "foo"),
    # step 4 does not apply when the suffix is a term for another IRI: it would read back as that IRI,
    # so step 5's compact IRI is the answer (PyLD: "ngsi-ld:default-context/no2")
    ({"no2": SDM_NO2}, CORE_VOCAB + "no2", "ngsi-ld:default-context/no2"),
    ({"no2": SDM_NO2}, SDM_NO2, "no2"),
    # step 5: the shortest compact IRI over every prefix, not the one of the shortest prefix name
    ({"a": "http://ex.org/", "bbb": "http://ex.org/very/long/path/"}, "http://ex.org/very/long/path/x", "bbb:x"),
    ({"a": "http://ex.org/", "bbb": "http://ex.org/very/long/path/"}, "http://ex.org/y", "a:y"),
    # equal length: the least in code-point order
    ({"b": "http://ex.org/p/", "c": "http://ex.org/q/", "a": "http://ex.org/"}, "http://ex.org/p/z", "b:z"),
    # an expanded definition is a prefix only with "@prefix": true (Create Term Definition 14.2.5)
    ({"ex": {"@id": "http://ex.org/"}}, "http://ex.org/z", "http://ex.org/z"),
    ({"ex": {"@id": "http://ex.org/", "@prefix": True}}, "http://ex.org/z", "ex:z"),
    # nothing fits: the IRI itself
    (None, "urn:ngsi-ld:Thing:1", "urn:ngsi-ld:Thing:1"),
]


@pytest.mark.parametrize(("local", "iri", "expected"), VECTORS)
def test_iri_compaction_vectors(local: dict[str, object] | None, iri: str, expected: str) -> None:
    context = ContextResolver().resolve(local)
    assert context.compact_iri(iri) == expected
    assert context.expand_term(expected) == iri  # every answer reads back as the IRI


def test_sdm_context_keeps_the_compact_iri_for_a_shadowed_vocab_name() -> None:
    """What the NGSI-LD API answers under the Smart Data Models context for a name written without a Link header."""
    context = ContextResolver().resolve(SDM_ALL_CONTEXT_URL)
    assert context.compact_iri(CORE_VOCAB + "no2") == "ngsi-ld:default-context/no2"
    assert context.compact_iri(CORE_VOCAB + "someNameNoModelHas") == "someNameNoModelHas"
