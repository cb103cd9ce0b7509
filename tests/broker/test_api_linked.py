"""Linked Entity Retrieval (`join`, `joinLevel`, `containedBy`, clause 4.5.23) on both stores, through the socket."""

from __future__ import annotations

import httpx
import pytest

from tests.broker.conftest import new_id


def rel(target: str) -> dict[str, str]:
    return {"type": "Relationship", "object": target}


@pytest.fixture
def graph(client: httpx.Client) -> dict[str, str]:
    """A building in a city in a country, and a second building in the same city."""
    ids = {"building": new_id("Building"), "other": new_id("Building"), "city": new_id("City"),
           "country": new_id("Country")}
    body = [
        {"id": ids["building"], "type": "Building", "name": "Tour", "locatedAt": rel(ids["city"])},
        {"id": ids["other"], "type": "Building", "name": "Musée", "locatedAt": rel(ids["city"])},
        {"id": ids["city"], "type": "City", "name": "Marseille", "population": 870_000,
         "isInCountry": rel(ids["country"])},
        {"id": ids["country"], "type": "Country", "name": "France", "isInCountry": rel(ids["country"])},
    ]
    r = client.post("/entityOperations/create", json=body)
    assert r.status_code == 201, r.text
    return ids


def get(client: httpx.Client, entity_id: str, **params: str) -> object:
    r = client.get(f"/entities/{entity_id}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_inline_one_and_two_levels(client: httpx.Client, graph: dict[str, str]) -> None:
    one = get(client, graph["building"], join="inline")
    assert isinstance(one, dict)
    linked = one["locatedAt"]["entity"]
    assert linked["id"] == graph["city"] and linked["name"]["value"] == "Marseille"
    assert "entity" not in linked["isInCountry"]  # joinLevel defaults to 1
    two = get(client, graph["building"], join="inline", joinLevel="2")
    country = two["locatedAt"]["entity"]["isInCountry"]["entity"]  # type: ignore[index]
    assert country["id"] == graph["country"]
    assert "entity" not in country["isInCountry"]  # the country links to itself: a loop ends


def test_inline_simplified_puts_the_linked_entity_in_place_of_the_uri(client: httpx.Client,
                                                                       graph: dict[str, str]) -> None:
    got = get(client, graph["building"], join="inline", options="keyValues")
    assert got["locatedAt"] == {"id": graph["city"], "type": "City", "name": "Marseille",  # type: ignore[index]
                                "population": 870_000, "isInCountry": graph["country"]}


def test_flat_appends_linked_entities_once(client: httpx.Client, graph: dict[str, str]) -> None:
    flat = get(client, graph["building"], join="flat", joinLevel="2")
    assert isinstance(flat, list)
    assert [e["id"] for e in flat] == [graph["building"], graph["city"], graph["country"]]
    assert flat[0]["locatedAt"] == rel(graph["city"])  # no inline member in the flat form
    r = client.get("/entities", params={"type": "Building", "join": "flat"})
    assert r.status_code == 200
    ids = [e["id"] for e in r.json()]
    assert sorted(ids[:2]) == sorted([graph["building"], graph["other"]]) and ids[2:] == [graph["city"]]


def test_flat_without_linked_entity_is_still_an_array(client: httpx.Client) -> None:
    lonely = new_id("Building")
    assert client.post("/entities", json={"id": lonely, "type": "Building",
                                          "locatedAt": rel(new_id("City"))}).status_code == 201
    # clause 4.5.23.3: the flattened representation is always an array
    assert [e["id"] for e in get(client, lonely, join="flat")] == [lonely]  # type: ignore[union-attr]
    assert "entity" not in get(client, lonely, join="inline")["locatedAt"]  # type: ignore[index]


def test_projection_into_linked_entities(client: httpx.Client, graph: dict[str, str]) -> None:
    got = get(client, graph["building"], join="inline", joinLevel="2", pick="id,locatedAt{id,name,isInCountry{name}}")
    assert got == {"id": graph["building"], "locatedAt": {
        **rel(graph["city"]), "entity": {"id": graph["city"], "name": {"type": "Property", "value": "Marseille"},
                                         "isInCountry": {**rel(graph["country"]), "entity": {
                                             "name": {"type": "Property", "value": "France"}}}}}}
    flat = get(client, graph["building"], join="flat", pick="id,locatedAt{name}")
    assert flat == [{"id": graph["building"], "locatedAt": rel(graph["city"])},
                    {"name": {"type": "Property", "value": "Marseille"}}]
    # omit applies to its own level only: the city keeps its name
    omitted = get(client, graph["building"], join="inline", omit="name,locatedAt{population}")
    assert "name" not in omitted and omitted["locatedAt"]["entity"]["name"]["value"] == "Marseille"  # type: ignore[index]
    assert "population" not in omitted["locatedAt"]["entity"]  # type: ignore[index]
    # a picked relationship-less projection retrieves nothing
    assert get(client, graph["building"], join="inline", pick="id,name") == {
        "id": graph["building"], "name": {"type": "Property", "value": "Tour"}}


def test_contained_by_and_invalid_joins(client: httpx.Client, graph: dict[str, str]) -> None:
    got = get(client, graph["building"], join="inline", containedBy=graph["city"])
    assert "entity" not in got["locatedAt"]  # type: ignore[index]
    for params in ({"join": "sideways"}, {"join": "inline", "joinLevel": "0"},
                   {"pick": "locatedAt{name}"},  # a projection into linked entities needs a join (5.7.1.4)
                   {"join": "inline", "pick": "locatedAt{isInCountry{name}}"}):  # deeper than joinLevel
        r = client.get(f"/entities/{graph['building']}", params=params)
        assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData"), params


def test_query_entities_via_post_takes_join_from_the_query(client: httpx.Client, graph: dict[str, str]) -> None:
    r = client.post("/entityOperations/query", json={"type": "Query", "entities": [{"type": "Building"}],
                                                     "join": "inline", "joinLevel": 1})
    assert r.status_code == 200, r.text
    assert {e["locatedAt"]["entity"]["id"] for e in r.json()} == {graph["city"]}
