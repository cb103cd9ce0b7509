"""orderBy (clause 4.23), datasetId selection (5.7.1.4) and projection matching (5.7.2.4) on both stores."""

from __future__ import annotations

import httpx
import pytest

from broker.query.ordering import OrderTerm, collation_key, parse_order_by
from models.errors import InvalidQuery
from tests.broker.conftest import new_id


def ids(client: httpx.Client, **params: str) -> list[str]:
    r = client.get("/entities", params=params)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()]


@pytest.fixture
def stations(client: httpx.Client) -> list[str]:
    """Three stations created in the order b, a, c; their names sort a < b < c."""
    made = {}
    for key, name, no2, at in (("b", "Bouc", 30, "2026-01-02T00:00:00Z"), ("a", "aix", 50, "2026-01-03T00:00:00Z"),
                               ("c", "Cassis", 10, "2026-01-01T00:00:00Z")):
        made[key] = new_id("Station")
        body = {"id": made[key], "type": "Station", "name": name,
                "no2": {"type": "Property", "value": no2, "observedAt": at,
                        "quality": {"type": "Property", "value": 3 - len(made)}},
                "address": {"type": "Property", "value": {"city": name.upper()}},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.0 + no2 / 100, 43.3]}}}
        assert client.post("/entities", json=body).status_code == 201
    return [made["a"], made["b"], made["c"]]


def test_order_by_values_members_and_directions(client: httpx.Client, stations: list[str]) -> None:
    a, b, c = stations
    assert ids(client, type="Station", orderBy="name") == [a, b, c]  # root collation: case ignored first
    assert ids(client, type="Station", orderBy="name;desc") == [c, b, a]
    assert ids(client, type="Station", orderBy="no2") == [c, b, a]
    assert ids(client, type="Station", orderBy="createdAt") == [b, a, c]
    assert ids(client, type="Station", orderBy="no2.observedAt") == [c, b, a]
    assert ids(client, type="Station", orderBy="no2.quality;desc") == [b, a, c]
    assert ids(client, type="Station", orderBy="address[city]") == [a, b, c]
    assert ids(client, type="Station", orderBy="type,no2;desc") == [a, b, c]
    # the order is over the whole result, then paginated
    assert ids(client, type="Station", orderBy="name", limit="2", offset="1") == [b, c]
    # by distance from a reference point: a is at 5.5, b at 5.3, c at 5.1
    assert ids(client, type="Station", orderBy="location;dist-asc", orderFrom="[5.0,43.3]") == [c, b, a]
    assert ids(client, type="Station", orderBy="location;dist-desc", orderFrom="[5.0,43.3]") == [a, b, c]


def test_entities_without_the_attribute_come_last(client: httpx.Client, stations: list[str]) -> None:
    bare = new_id("Station")
    assert client.post("/entities", json={"id": bare, "type": "Station"}).status_code == 201
    assert ids(client, type="Station", orderBy="no2")[-1] == bare
    assert ids(client, type="Station", orderBy="no2;desc")[-1] == bare


@pytest.mark.parametrize("params", [
    {"orderBy": "name;sideways"}, {"orderBy": "name,"}, {"orderBy": "location;dist-asc"},
    {"orderBy": "name", "collation": "not a collation!"}, {"orderBy": "name", "orderFrom": "[1,2]"},
])
def test_bad_ordering_is_bad_request_data(client: httpx.Client, params: dict[str, str]) -> None:
    r = client.get("/entities", params={"type": "Station", **params})
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData"), r.text


def test_other_collations_are_not_supported(client: httpx.Client) -> None:
    r = client.get("/entities", params={"type": "Station", "orderBy": "name", "collation": "de-u-co-phonebk"})
    assert r.status_code == 501 and r.json()["type"].endswith("/OperationNotSupported")


def test_ordering_language_and_collation_key() -> None:
    assert parse_order_by("name,age;desc,location;dist-asc") == (
        OrderTerm(("name",)), OrderTerm(("age",), (), "desc"), OrderTerm(("location",), (), "dist-asc"))
    assert parse_order_by("address[city.code]") == (OrderTerm(("address",), ("city", "code")),)
    with pytest.raises(InvalidQuery):
        parse_order_by("name;up")
    words = ["Zoe", "zoé", "zoe", "Éa", "eb"]
    assert sorted(words, key=collation_key) == ["Éa", "eb", "zoe", "Zoe", "zoé"]


def test_dataset_id_selects_instances(client: httpx.Client) -> None:
    entity_id = new_id("Tower")
    body = {"id": entity_id, "type": "Tower",
            "name": [{"type": "Property", "value": "Eiffel Tower"},
                     {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}],
            "height": {"type": "Property", "value": 330, "datasetId": "urn:ngsi-ld:Dataset:fr"}}
    assert client.post("/entities", json=body).status_code == 201

    def got(**params: str) -> dict:
        r = client.get(f"/entities/{entity_id}", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    fr = got(datasetId="urn:ngsi-ld:Dataset:fr")
    assert fr["name"] == {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}
    assert fr["height"]["value"] == 330
    default = got(datasetId="@none")
    assert default["name"] == {"type": "Property", "value": "Eiffel Tower"} and "height" not in default
    assert len(got(datasetId="@none,urn:ngsi-ld:Dataset:fr")["name"]) == 2
    queried = client.get("/entities", params={"type": "Tower", "datasetId": "urn:ngsi-ld:Dataset:other"}).json()
    assert queried == [{"id": entity_id, "type": "Tower"}]  # the entity matches; none of its instances do
    assert client.get(f"/entities/{entity_id}", params={"datasetId": "not a uri"}).status_code == 400


def test_projection_decides_what_matches_and_what_is_found(client: httpx.Client) -> None:
    named, nameless = new_id("Kiosk"), new_id("Kiosk")
    assert client.post("/entityOperations/create", json=[
        {"id": named, "type": "Kiosk", "name": "K1", "stock": 1}, {"id": nameless, "type": "Kiosk", "stock": 2}],
    ).status_code == 201
    # clause 5.7.2.4: with pick listing attributes only, an entity holding none of them does not match
    assert client.get("/entities", params={"type": "Kiosk", "pick": "name"}).json() == [{"name": {"type": "Property",
                                                                                                  "value": "K1"}}]
    assert len(client.get("/entities", params={"type": "Kiosk", "pick": "id,name"}).json()) == 2
    # clause 5.7.1.4: Retrieve Entity finds nothing when none of attrs is there, or the projection leaves nothing
    for params in ({"attrs": "name"}, {"pick": "name"}, {"omit": "id,type,stock"}):
        r = client.get(f"/entities/{nameless}", params=params)
        assert r.status_code == 404 and r.json()["type"].endswith("/ResourceNotFound"), params
    # attrs with pick or omit, and entity members in attrs, are refused
    for params in ({"attrs": "stock", "pick": "name"}, {"attrs": "stock", "omit": "name"}, {"attrs": "id,type"}):
        r = client.get(f"/entities/{named}", params=params)
        assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData"), params
    # attrs may name attributes by their full IRI
    iri = "https://uri.etsi.org/ngsi-ld/default-context/stock"
    assert client.get(f"/entities/{named}", params={"attrs": iri}).json()["stock"]["value"] == 1
    # a type selection on Retrieve Entity: another type is not found
    assert client.get(f"/entities/{named}", params={"type": "Kiosk"}).status_code == 200
    assert client.get(f"/entities/{named}", params={"type": "Bench"}).status_code == 404
