"""scopeQ (clause 4.19): the spec's examples, wildcards, errors, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.scope import ScopePattern, compile_scope_query, parse_scope_query
from models.errors import InvalidQuery

GARDENS = ["/Madrid/Gardens", "/Madrid/Gardens/ParqueNorte", "/Madrid/Gardens/ParqueNorte/Parterre1",
           "/Madrid/Gardens/ParqueSur"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("/Madrid", ((ScopePattern(("Madrid",)),),)),  # example 1
        ("/Madrid/Gardens/#", ((ScopePattern(("Madrid", "Gardens"), True),),)),  # example 2
        ("/Madrid/+/ParqueNorte", ((ScopePattern(("Madrid", "+", "ParqueNorte")),),)),  # example 3
        ("(/Madrid/Districts;/CompanyA)", ((ScopePattern(("Madrid", "Districts")), ScopePattern(("CompanyA",))),)),
        (
            "(/Madrid/Districts;/CompanyA)|CompanyB",  # example 5, as printed (no leading '/')
            ((ScopePattern(("Madrid", "Districts")), ScopePattern(("CompanyA",))), (ScopePattern(("CompanyB",)),)),
        ),
        ("/#", ((ScopePattern((), True),),)),
        ("/A,/B", ((ScopePattern(("A",)),), (ScopePattern(("B",)),))),
    ],
)
def test_parses_the_spec_examples(text: str, groups: object) -> None:
    assert parse_scope_query(text) == groups


@pytest.mark.parametrize(
    ("text", "scopes", "expected"),
    [
        ("/Madrid", ["/Madrid"], True),
        ("/Madrid", ["/Madrid/Gardens"], False),
        ("/Madrid", ["Madrid"], True),  # a Scope's leading '/' is optional (clause 4.18)
        *[("/Madrid/Gardens/#", [s], True) for s in GARDENS],
        ("/Madrid/Gardens/#", ["/Madrid"], False),
        ("/Madrid/Gardens/#", ["/Madrid/GardensX"], False),
        ("/Madrid/+/ParqueNorte", ["/Madrid/Gardens/ParqueNorte"], True),
        ("/Madrid/+/ParqueNorte", ["/Madrid/Sights/ParqueNorte"], True),
        ("/Madrid/+/ParqueNorte", ["/Madrid/ParqueNorte"], False),
        ("/Madrid/+/ParqueNorte", ["/Madrid/Gardens/ParqueNorte/Parterre1"], False),
        ("/Madrid/+/#", ["/Madrid/Gardens/ParqueNorte/Parterre1"], True),
        ("/Madrid/+/#", ["/Madrid"], False),
        ("(/Madrid/Districts;/CompanyA)", ["/Madrid/Districts", "/CompanyA"], True),
        ("(/Madrid/Districts;/CompanyA)", ["/Madrid/Districts"], False),
        ("(/Madrid/Districts;/CompanyA)|CompanyB", ["/CompanyB"], True),
        ("(/Madrid/Districts;/CompanyA),/CompanyB", ["/CompanyA"], False),
        # without parentheses ';' binds tighter than ',' (the ETSI suite's reading, see broker.query.scope)
        ("/Madrid/Districts;/CompanyA", ["/Madrid/Districts", "/CompanyA"], True),
        ("/Madrid/Districts;/CompanyA", ["/CompanyA"], False),
        ("/CompanyB,/Madrid/Districts;/CompanyA", ["/CompanyA"], False),
        ("/CompanyB,/Madrid/Districts;/CompanyA", ["/CompanyB"], True),
        ("/#", ["/Anything/Below"], True),
        ("/#", [], False),
        ("/#", None, False),
        ("/A", "/A", True),
    ],
)
def test_matches(text: str, scopes: list[str] | str | None, expected: bool) -> None:
    assert compile_scope_query(text).matches(scopes) is expected


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "a scope"),
        ("/", 1, "a scope level"),
        ("/A;", 3, "a scope"),
        ("(/A);/B", 4, "needs parentheses"),
        ("/A/", 3, "a scope level"),
        ("/1A", 1, "a scope level"),
        ("(/A;/B", 6, "')'"),
        ("/A,", 3, "a scope level"),
        ("/A#", 2, "'/', ',', '|' or end"),
        ("/A/#/B", 4, "'/', ',', '|' or end"),
    ],
)
def test_syntax_errors(text: str, position: int, expected: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_scope_query(text)
    assert f"position {position}" in info.value.detail
    assert expected in info.value.detail


_levels = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(_levels, _levels)
def test_subtree_wildcard_is_prefix_match(pattern: list[str], scope: list[str]) -> None:
    text, entity_scope = "/" + "/".join(pattern), "/" + "/".join(scope)
    assert compile_scope_query(text + "/#").matches([entity_scope]) == (scope[: len(pattern)] == pattern)
    assert compile_scope_query(text).matches([entity_scope]) == (scope == pattern)
    plus = "/" + "/".join("+" for _ in pattern)
    assert compile_scope_query(plus).matches([entity_scope]) == (len(scope) == len(pattern))
    assert ScopePattern(tuple(pattern), True).text() == text + "/#"
