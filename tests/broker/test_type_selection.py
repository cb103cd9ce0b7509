"""Entity type selection (clause 4.17): the spec's examples, DNF, errors, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.types import compile_type_selection, parse_type_selection
from models.errors import InvalidQuery

NS = "https://example.org/"


def expand(term: str) -> str:
    return term if ":" in term and "//" in term else NS + term


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("Building|House", (("Building",), ("House",))),  # example 1
        ("Building,House", (("Building",), ("House",))),  # example 1, alternative
        ("(Home;Vehicle)", (("Home", "Vehicle"),)),  # example 2
        ("(Home;Vehicle)|Motorhome", (("Home", "Vehicle"), ("Motorhome",))),  # example 3
        ("(Home;Vehicle),Motorhome", (("Home", "Vehicle"), ("Motorhome",))),  # example 3, alternative
        ("(Home)", (("Home",),)),
        ("sdm:Device", (("sdm:Device",),)),
        ("https://uri.fiware.org/ns/dataModels#AirQualityObserved", (("https://uri.fiware.org/ns/dataModels#AirQualityObserved",),)),
        ("urn:type:a,Bâtiment", (("urn:type:a",), ("Bâtiment",))),
    ],
)
def test_parses_the_spec_examples(text: str, groups: tuple[tuple[str, ...], ...]) -> None:
    assert parse_type_selection(text) == groups


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "an entity type"),
        ("A;B", 1, "needs parentheses"),
        ("(A;B", 4, "')'"),
        ("A,", 2, "an entity type"),
        ("A||B", 2, "an entity type"),
        ("((A;B);C)", 1, "an entity type"),
        ("(A|B)", 2, "';' or ')'"),
        ("1A", 0, "a name"),
        ("A)", 1, "',', '|' or end"),
    ],
)
def test_syntax_errors(text: str, position: int, expected: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_type_selection(text)
    assert f"position {position}" in info.value.detail
    assert expected in info.value.detail


@pytest.mark.parametrize(
    ("text", "types", "expected"),
    [
        ("Building|House", ["House"], True),
        ("Building|House", ["Shed"], False),
        ("(Home;Vehicle)", ["Home"], False),
        ("(Home;Vehicle)", ["Vehicle", "Home", "Other"], True),
        ("(Home;Vehicle),Motorhome", ["Motorhome"], True),
        ("(Home;Vehicle),Motorhome", ["Vehicle"], False),
        ("(Home;Vehicle),Motorhome", [], False),
    ],
)
def test_matches(text: str, types: list[str], expected: bool) -> None:
    selection = compile_type_selection(text)
    expanded = [NS + t for t in types]
    assert selection.matches(expanded, expand) is expected
    assert selection.compile(expand)(expanded) is expected


def test_terms_and_dnf_are_expanded_and_deduplicated() -> None:
    selection = compile_type_selection("(Home;Vehicle)|Motorhome,(Vehicle;Home)|urn:x:T")
    assert selection.terms() == {"Home", "Vehicle", "Motorhome", "urn:x:T"}
    assert selection.dnf(lambda t: NS + t) == [
        frozenset({NS + "Home", NS + "Vehicle"}),
        frozenset({NS + "Motorhome"}),
        frozenset({NS + "urn:x:T"}),
    ]


_types = st.sampled_from(["A", "B", "C", "D"])
_groups = st.lists(st.lists(_types, min_size=1, max_size=3), min_size=1, max_size=4)


def _text(groups: list[list[str]], sep: str) -> str:
    return sep.join(g[0] if len(g) == 1 else "(" + ";".join(g) + ")" for g in groups)


@settings(max_examples=200, deadline=None)
@given(_groups, st.sampled_from([",", "|"]), st.sets(_types))
def test_selection_is_an_or_of_ands(groups: list[list[str]], sep: str, have: set[str]) -> None:
    selection = compile_type_selection(_text(groups, sep))
    assert selection.groups == tuple(tuple(g) for g in groups)
    expanded = {NS + t for t in have}
    expected = any(set(g) <= have for g in groups)
    assert selection.matches(expanded, expand) is expected
    assert selection.compile(expand)(expanded) is expected
    # the two separators are the same operator
    assert compile_type_selection(_text(groups, "|" if sep == "," else ",")).matches(expanded, expand) is expected
