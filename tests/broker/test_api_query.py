"""GET /entities (Query Entities, clause 6.4.3.2) and DELETE /entities (Purge, 6.4.3.3) on both stores."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.broker.conftest import link, new_id

AIX = [5.447, 43.529]
MARSEILLE = [5.370, 43.296]


def seed(client: httpx.Client) -> dict[str, str]:
    ids = {"aix": new_id("AQO"), "marseille": new_id("AQO"), "noise": new_id("NLO"), "both": new_id("X")}
    body = [
        {"id": ids["aix"], "type": "AirQualityObserved", "no2": {"type": "Property", "value": 22, "observedAt": "2026-11-26T06:00:00Z"},
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": AIX}}, "scope": "/Aix/Centre",
         "name": "Aix"},
        {"id": ids["marseille"], "type": "AirQualityObserved", "no2": 48,
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": MARSEILLE}}, "scope": ["/Marseille/Nord"],
         "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:m1"}, "name": "Marseille"},
        {"id": ids["noise"], "type": "NoiseLevelObserved", "LAeq": 61,
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": AIX}}},
        {"id": ids["both"], "type": ["AirQualityObserved", "NoiseLevelObserved"], "no2": 5, "LAeq": 40},
    ]
    r = client.post("/entityOperations/create", json=body)
    assert r.status_code == 201, r.text
    return ids


def query(client: httpx.Client, **params: str) -> list[dict]:
    r = client.get("/entities", params=params)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list)
    return r.json()


def ids_of(entities: list[dict]) -> set[str]:
    return {e["id"] for e in entities}


def test_type_selection(client: httpx.Client) -> None:
    ids = seed(client)
    assert ids_of(query(client, type="AirQualityObserved")) == {ids["aix"], ids["marseille"], ids["both"]}
    assert ids_of(query(client, type="NoiseLevelObserved,AirQualityObserved")) == set(ids.values())
    assert ids_of(query(client, type="(AirQualityObserved;NoiseLevelObserved)")) == {ids["both"]}
    assert ids_of(query(client, type="*")) == set(ids.values())


def test_id_and_id_pattern(client: httpx.Client) -> None:
    ids = seed(client)
    assert ids_of(query(client, id=f"{ids['aix']},{ids['noise']}", local="true")) == {ids["aix"], ids["noise"]}
    assert ids_of(query(client, idPattern="^urn:ngsi-ld:NLO:", type="*")) == {ids["noise"]}
    r = client.get("/entities", params={"id": "not a uri", "local": "true"})
    assert r.status_code == 400
    r = client.get("/entities", params={"idPattern": "(unclosed", "local": "true"})
    assert r.status_code == 400
    assert r.json()["type"].endswith("/BadRequestData")  # clause 5.7.2.4


@pytest.mark.parametrize("params", [{"id": "urn:ngsi-ld:X:1"}, {"idPattern": ".*"}, {"scopeQ": "/Aix"}, {}])
def test_too_wide_query_is_refused(client: httpx.Client, params: dict[str, str]) -> None:
    # clause 5.7.2.4: a type selection, attrs, q, a geo-query or local scope is needed
    r = client.get("/entities", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("/BadRequestData")


def test_q_and_attrs(client: httpx.Client) -> None:
    ids = seed(client)
    assert ids_of(query(client, type="AirQualityObserved", q="no2>20")) == {ids["aix"], ids["marseille"]}
    assert ids_of(query(client, q="no2>20;no2<30")) == {ids["aix"]}
    assert ids_of(query(client, q="refDevice==urn:ngsi-ld:Device:m1")) == {ids["marseille"]}
    assert ids_of(query(client, q='name=="Aix"')) == {ids["aix"]}
    assert ids_of(query(client, q="no2.observedAt>=2026-11-26T00:00:00Z")) == {ids["aix"]}
    assert ids_of(query(client, attrs="LAeq")) == {ids["noise"], ids["both"]}
    got = query(client, attrs="LAeq", type="NoiseLevelObserved")
    assert all(set(e) <= {"id", "type", "LAeq"} for e in got)


@pytest.mark.parametrize("q", ["no2>>1", "no2==", "(no2>1", "no2 > 1 ;;"])
def test_invalid_q_is_400(client: httpx.Client, q: str) -> None:
    r = client.get("/entities", params={"type": "AirQualityObserved", "q": q})
    assert r.status_code == 400
    assert r.json()["type"].endswith("BadRequestData")  # clause 5.7.2.4


def test_scope_q(client: httpx.Client) -> None:
    ids = seed(client)
    assert ids_of(query(client, scopeQ="/Aix/#", local="true")) == {ids["aix"]}
    assert ids_of(query(client, scopeQ="/Marseille/Nord,/Aix/Centre", type="*")) == {ids["aix"], ids["marseille"]}
    # clause 4.19: ';' is the AND of scopes, with or without parentheses
    assert ids_of(query(client, scopeQ="/Aix/Centre;/Aix/#", local="true")) == {ids["aix"]}
    assert ids_of(query(client, scopeQ="/Aix/Centre;/Marseille/Nord", local="true")) == set()
    assert client.get("/entities", params={"scopeQ": "Aix//", "local": "true"}).status_code == 400


def test_geo_query(client: httpx.Client) -> None:
    ids = seed(client)
    near = query(client, georel="near;maxDistance==2000", geometry="Point", coordinates="[5.447,43.529]")
    assert ids_of(near) == {ids["aix"], ids["noise"]}
    far = query(client, type="AirQualityObserved", georel="near;minDistance==2000", geometry="Point", coordinates="[5.447,43.529]")
    assert ids_of(far) == {ids["marseille"]}
    box = "[[[5.3,43.2],[5.5,43.2],[5.5,43.4],[5.3,43.4],[5.3,43.2]]]"
    assert ids_of(query(client, georel="within", geometry="Polygon", coordinates=box)) == {ids["marseille"]}
    fc = client.get("/entities", params={"type": "NoiseLevelObserved"}, headers={"Accept": "application/geo+json"}).json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[500,43]"},
        {"georel": "within", "geometry": "Polygon", "coordinates": "[[[5,43],[6,43]]]"},
        {"georel": "near", "geometry": "Point", "coordinates": "[5,43]"},
        {"georel": "within", "geometry": "Point"},
        {"georel": "sideways", "geometry": "Point", "coordinates": "[5,43]"},
    ],
)
def test_invalid_geo_query_is_400(client: httpx.Client, params: dict[str, str]) -> None:
    r = client.get("/entities", params=params)
    assert r.status_code == 400, r.text


def test_pagination_and_count(client: httpx.Client) -> None:
    ids = seed(client)
    everything = query(client, type="*")
    assert [e["id"] for e in everything] == sorted(ids.values())
    page = query(client, type="*", limit="2", offset="1")
    assert [e["id"] for e in page] == sorted(ids.values())[1:3]
    r = client.get("/entities", params={"type": "*", "limit": "0", "count": "true"})
    assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "4"
    r = client.get("/entities", params={"type": "*", "limit": "101"})
    assert r.status_code == 403 and r.json()["type"].endswith("TooManyResults")
    for bad in ({"limit": "-1"}, {"limit": "x"}, {"offset": "-3"}, {"limit": "0"}):
        assert client.get("/entities", params={"type": "*", **bad}).status_code == 400, bad


def test_default_limit_is_20(client: httpx.Client) -> None:
    body = [{"id": new_id("Many"), "type": "Many"} for _ in range(25)]
    assert client.post("/entityOperations/create", json=body).status_code == 201
    assert len(query(client, type="Many")) == 20


def test_no_filter_is_400_unless_local(client: httpx.Client) -> None:
    seed(client)
    assert client.get("/entities").status_code == 400
    assert len(query(client, local="true")) == 4


def test_representations_in_query(client: httpx.Client) -> None:
    ids = seed(client)
    kv = {e["id"]: e for e in query(client, type="AirQualityObserved", options="keyValues")}
    assert kv[ids["marseille"]]["no2"] == 48
    concise = {e["id"]: e for e in query(client, type="AirQualityObserved", options="concise")}
    assert concise[ids["marseille"]]["refDevice"] == {"object": "urn:ngsi-ld:Device:m1"}
    sys = query(client, type="NoiseLevelObserved", options="sysAttrs")
    assert all("createdAt" in e and "createdAt" in e["LAeq"] for e in sys)
    picked = query(client, type="NoiseLevelObserved", pick="id,LAeq")
    assert all(set(e) <= {"id", "LAeq"} for e in picked)
    r = client.get("/entities", params={"type": "AirQualityObserved"}, headers={"Accept": "application/ld+json"})
    assert all("@context" in e for e in r.json())


def test_user_context_applies_to_query_terms(client: httpx.Client, context_server) -> None:
    ctx = context_server.publish({"Station": "https://example.org/Station", "level": "https://example.org/level"})
    entity_id = new_id()
    r = client.post("/entities", json={"id": entity_id, "type": "Station", "level": 3}, headers=link(ctx))
    assert r.status_code == 201
    with_ctx = client.get("/entities", params={"type": "Station", "q": "level==3"}, headers=link(ctx))
    assert [e["id"] for e in with_ctx.json()] == [entity_id]
    assert with_ctx.json()[0]["level"]["value"] == 3
    # without the context, "Station" expands to the default vocabulary: another type
    assert query(client, type="Station") == []
    assert [e["type"] for e in query(client, type="https://example.org/Station")] == ["https://example.org/Station"]


def test_purge(client: httpx.Client) -> None:
    ids = seed(client)
    assert client.delete("/entities").status_code == 400  # too wide
    r = client.delete("/entities", params={"type": "AirQualityObserved", "q": "no2>20"})
    assert r.status_code == 204
    assert ids_of(query(client, type="*")) == {ids["noise"], ids["both"]}


def test_purge_attributes_with_keep_or_drop(client: httpx.Client) -> None:
    ids = seed(client)
    # clause 5.6.21.4: drop deletes the named attributes, keep all but them; the entities stay
    assert client.delete("/entities", params={"type": "AirQualityObserved", "drop": "no2"}).status_code == 204
    left = {e["id"]: e for e in query(client, type="AirQualityObserved")}
    assert len(left) == 3 and all("no2" not in e for e in left.values()) and "location" in left[ids["aix"]]
    r = client.delete("/entities", params={"id": ids["noise"], "keep": "LAeq"})
    assert r.status_code == 204  # keep names attributes: the purge is no longer too wide
    assert client.get(f"/entities/{ids['noise']}").json() == {
        "id": ids["noise"], "type": "NoiseLevelObserved", "LAeq": {"type": "Property", "value": 61}}
    r = client.delete("/entities", params={"type": "AirQualityObserved", "keep": "name", "drop": "no2"})
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")
    assert len(query(client, type="*")) == 4


def test_purge_everything_in_local_scope(client: httpx.Client) -> None:
    seed(client)
    assert client.delete("/entities", params={"local": "true"}).status_code == 204
    assert query(client, type="*") == []


def test_self_intersecting_reference_polygon_on_both_stores(client: httpx.Client) -> None:
    bowtie = [[[5.36, 43.29], [5.38, 43.31], [5.38, 43.29], [5.36, 43.31], [5.36, 43.29]]]
    shape_holder, inside, above = new_id("Zone"), new_id("Zone"), new_id("Zone")
    body = [{"id": shape_holder, "type": "Zone", "location": {"type": "Polygon", "coordinates": bowtie}},
            {"id": inside, "type": "Zone", "location": {"type": "Point", "coordinates": [5.362, 43.300]}},
            {"id": above, "type": "Zone", "location": {"type": "Point", "coordinates": [5.370, 43.305]}}]
    assert client.post("/entityOperations/create", json=body).status_code == 201
    coordinates = orjson.dumps(bowtie).decode()
    # the store that evaluates geo-queries itself (PostGIS) repairs the reference as broker.query.geo does
    assert ids_of(query(client, type="Zone", georel="within", geometry="Polygon", coordinates=coordinates)) == {inside}
    assert ids_of(query(client, type="Zone", georel="equals", geometry="Polygon", coordinates=coordinates)) == {
        shape_holder}


def test_geojson_collection_carries_the_context_in_its_body(client: httpx.Client, context_server) -> None:
    seed(client)
    url = context_server.publish({"Noise": "https://uri.etsi.org/ngsi-ld/default-context/NoiseLevelObserved"})
    headers = {"Accept": "application/geo+json", **link(url)}
    r = client.get("/entities", params={"type": "Noise"}, headers=headers)
    # clause 6.3.6: without Prefer, the @context goes in the FeatureCollection (not in each Feature), no Link
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    assert r.json()["@context"] == url and "link" not in r.headers
    assert all("@context" not in f for f in r.json()["features"])
    r = client.get("/entities", params={"type": "Noise"}, headers={**headers, "Prefer": "body=json"})
    assert "@context" not in r.json() and url in r.headers["link"]
    r = client.post("/entityOperations/query", json={"type": "Query", "entities": [{"type": "Noise"}]},
                    headers=headers)
    assert r.status_code == 200 and r.json()["type"] == "FeatureCollection" and len(r.json()["features"]) == 2
    # geometryProperty picks the geometry, and only means something for GeoJSON (clause 5.7.2.4)
    r = client.get("/entities", params={"type": "Noise", "geometryProperty": "location"}, headers=link(url))
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")


def test_unknown_tenant_query_is_404(broker_url: str) -> None:
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": "never-written"}) as c:
        r = c.get("/entities", params={"type": "T"})
        assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")


def test_expand_values_compares_q_values_as_expanded_terms(client: httpx.Client, context_server) -> None:
    url = context_server.publish({"tourism": "https://example.org/category/tourism"})
    entity_id = new_id("Poi")
    body = {"id": entity_id, "type": "Poi", "category": "https://example.org/category/tourism"}
    assert client.post("/entities", json=body).status_code == 201
    params = {"type": "Poi", "q": 'category=="tourism"'}
    assert query_linked(client, url, params) == []
    # clause 6.4.3.2 expandValues: the values of these attributes are expanded with the @context first
    assert ids_of(query_linked(client, url, {**params, "expandValues": "category"})) == {entity_id}


def test_entity_map_of_a_broker_without_registrations_lists_its_own_entities(client: httpx.Client) -> None:
    assert client.post("/entities", json={"id": "urn:ngsi-ld:T:map-1", "type": "T"}).status_code == 201
    r = client.get("/entities", params={"type": "T", "entityMap": "true"})
    assert r.status_code == 200, r.text
    held = client.get(r.headers["NGSILD-EntityMap"].removeprefix("/ngsi-ld/v1")).json()["entityMap"]
    assert held == {e["id"]: ["@none"] for e in r.json()} and "urn:ngsi-ld:T:map-1" in held


def query_linked(client: httpx.Client, url: str, params: dict[str, str]) -> list[dict]:
    r = client.get("/entities", params=params, headers=link(url))
    assert r.status_code == 200, r.text
    return r.json()
