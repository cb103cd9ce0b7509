"""Attribute projection (clause 4.21): parsing, pick and omit on ENF entities."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.projection import ProjectionTerm, parse_attrs, parse_projection
from models.errors import InvalidQuery

NS = "https://example.org/"


def expand(term: str) -> str:
    return NS + term


def prop(value: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value}]


DEVICE = {"id": "urn:ngsi-ld:Device:1", "type": [NS + "Device"], NS + "temperature": prop(20), NS + "humidity": prop(60),
          NS + "battery": prop(0.9)}  # fmt: skip
STATION = {
    "id": "urn:ngsi-ld:Station:1",
    "type": [NS + "Station"],
    "scope": ["/Aix"],
    NS + "name": prop("Aix"),
    NS + "temperature": prop(21),
    NS + "observation": [{"type": "Relationship", "object": DEVICE["id"], "entity": DEVICE}],
}


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("temperature", (ProjectionTerm("temperature"),)),  # example 1
        ("temperature,humidity", (ProjectionTerm("temperature"), ProjectionTerm("humidity"))),  # example 2
        ("temperature|humidity", (ProjectionTerm("temperature"), ProjectionTerm("humidity"))),
        (
            "observation{temperature,humidity}",  # example 3
            (ProjectionTerm("observation", (ProjectionTerm("temperature"), ProjectionTerm("humidity"))),),
        ),
        ("a{b{c}},d", (ProjectionTerm("a", (ProjectionTerm("b", (ProjectionTerm("c"),)),)), ProjectionTerm("d"))),
    ],
)
def test_parses_the_spec_examples(text: str, terms: tuple[ProjectionTerm, ...]) -> None:
    projection = parse_projection(text)
    assert projection.terms == terms
    assert parse_projection(",".join(t.text() for t in terms)).terms == terms


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "an attribute name"),
        ("a,", 2, "an attribute name"),
        ("a{b", 3, "'}'"),
        ("a{}", 2, "an attribute name"),
        ("a}", 1, "end of projection"),
        ("a b", 1, "end of projection"),
        ("1a", 0, "an attribute name"),
        ("a;b", 1, "',', '|', '{'"),
    ],
)
def test_syntax_errors(text: str, position: int, expected: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_projection(text)
    assert f"position {position}" in info.value.detail
    assert expected in info.value.detail


def test_pick_keeps_only_listed_members() -> None:
    picked = parse_projection("id,temperature,missing").pick(STATION, expand)
    assert picked == {"id": STATION["id"], NS + "temperature": prop(21)}


def test_pick_type_and_scope_are_entity_members() -> None:
    assert parse_projection("type,scope").pick(STATION, expand) == {"type": STATION["type"], "scope": ["/Aix"]}


def test_pick_projects_linked_entities() -> None:
    picked = parse_projection("id,observation{temperature}").pick(STATION, expand)
    linked = picked[NS + "observation"][0]["entity"]
    assert linked == {NS + "temperature": prop(20)}
    assert STATION[NS + "observation"][0]["entity"] is DEVICE and NS + "humidity" in DEVICE  # input untouched


def test_omit_removes_listed_members_and_projects_linked_entities() -> None:
    omitted = parse_projection("scope,name,observation{humidity,battery}").omit(STATION, expand)
    assert set(omitted) == {"id", "type", NS + "temperature", NS + "observation"}
    assert omitted[NS + "observation"][0]["entity"] == {"id": DEVICE["id"], "type": DEVICE["type"],
                                                         NS + "temperature": prop(20)}  # fmt: skip
    assert "scope" in STATION


def test_attribute_terms_and_attrs() -> None:
    assert parse_projection("id,type,a{b,c{d}}").attribute_terms() == {"a", "b", "c", "d"}
    # attrs is a comma-separated list of Attribute names: terms or full IRIs (clause 6.4.3.2)
    assert parse_attrs("a,b,c") == ("a", "b", "c")
    assert parse_attrs("https://example.org/ns#speed,b") == ("https://example.org/ns#speed", "b")
    for bad in ("a{b}", "a,,b", "id,type", "a,scope", "a|b"):
        with pytest.raises(InvalidQuery):
            parse_attrs(bad)


_members = st.sampled_from(["id", "type", "scope", "name", "temperature", "observation", "other"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_members, min_size=1, max_size=5))
def test_pick_and_omit_partition_the_entity(names: list[str]) -> None:
    projection = parse_projection(",".join(names))
    picked, omitted = projection.pick(STATION, expand), projection.omit(STATION, expand)
    assert set(picked).isdisjoint(omitted)
    assert {**picked, **omitted} == STATION
