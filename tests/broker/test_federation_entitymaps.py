"""EntityMaps (clauses 4.5.25, 5.2.39, 5.14, 6.32) between real broker processes on loopback.

The fixtures of test_federation: the metropolitan broker M and the towns A and B,
each test in a tenant of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bench.procs import broker_process, free_port
from tests.broker.test_federation import API, Brokers, api, brokers, create, ids, register, sensor, tenant
from tests.pg import store_url

__all__ = ["api", "brokers", "tenant"]  # the fixtures, imported to be used here

HEADER = "NGSILD-EntityMap"


def map_path(response: httpx.Response) -> str:
    """The path below /ngsi-ld/v1 of the EntityMap a response names."""
    assert response.status_code == 200, response.text
    location = response.headers[HEADER]
    assert location.startswith(f"{API}/entityMaps/urn:ngsi-ld:EntityMap:")
    return location[len(API):]


def test_query_with_entity_map_lists_local_and_registered_entities(brokers: Brokers, api: dict[str, httpx.Client],
                                                                    tenant: str) -> None:
    create(api["A"], sensor("urn:ngsi-ld:Sensor:aix-1", no2=41))
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    reg = register(api, "M", brokers.urls["A"], tenant)
    got = api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true"})
    assert ids(got) == {"urn:ngsi-ld:Sensor:aix-1", "urn:ngsi-ld:Sensor:metro-1"}
    path = map_path(got)
    retrieved = api["M"].get(path)
    assert retrieved.status_code == 200, retrieved.text
    body = retrieved.json()
    assert body["type"] == "EntityMap" and path.endswith(body["id"]) and body["expiresAt"].endswith("Z")
    assert body["entityMap"] == {"urn:ngsi-ld:Sensor:aix-1": [reg], "urn:ngsi-ld:Sensor:metro-1": ["@none"]}
    # the town made an EntityMap of its own (createEntityMapQueryEntity is in federationOps): linkedMaps names it
    linked = body["linkedMaps"][reg]
    assert linked.startswith(f"{brokers.urls['A']}{API}/entityMaps/urn:ngsi-ld:EntityMap:")
    town = httpx.get(linked, headers={"NGSILD-Tenant": tenant})
    assert town.status_code == 200 and town.json()["entityMap"] == {"urn:ngsi-ld:Sensor:aix-1": ["@none"]}
    # POST /entityOperations/query makes one too
    posted = api["M"].post("/entityOperations/query", params={"entityMap": "true"},
                           json={"type": "Query", "entities": [{"type": "Sensor"}]})
    assert api["M"].get(map_path(posted)).json()["entityMap"] == body["entityMap"]


def test_a_later_query_with_the_map_is_answered_from_its_entities(brokers: Brokers, api: dict[str, httpx.Client],
                                                                   tenant: str) -> None:
    create(api["A"], sensor("urn:ngsi-ld:Sensor:aix-1", no2=41))
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    register(api, "M", brokers.urls["A"], tenant)
    first = api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true", "limit": "1"})
    assert ids(first) == {"urn:ngsi-ld:Sensor:aix-1"}
    location = first.headers[HEADER]
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-2", no2=5))  # not in the map
    params = {"type": "Sensor", "limit": "1", "offset": "1", "count": "true"}
    second = api["M"].get("/entities", params=params, headers={HEADER: location})
    assert ids(second) == {"urn:ngsi-ld:Sensor:metro-1"}
    assert second.headers["NGSILD-Results-Count"] == "2" and second.headers[HEADER] == location
    assert ids(api["M"].get("/entities", params={"type": "Sensor"})) == {
        "urn:ngsi-ld:Sensor:aix-1", "urn:ngsi-ld:Sensor:metro-1", "urn:ngsi-ld:Sensor:metro-2"}


def test_entity_map_update_and_delete(api: dict[str, httpx.Client]) -> None:
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    path = map_path(api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true"}))
    r = api["M"].patch(path, json={"expiresAt": "2099-01-01T00:00:00Z", "entityMap": {"ignored": ["x"]}})
    assert r.status_code == 204, r.text
    body = api["M"].get(path).json()
    assert body["expiresAt"] == "2099-01-01T00:00:00.000Z"
    assert body["entityMap"] == {"urn:ngsi-ld:Sensor:metro-1": ["@none"]}  # output only: ignored (5.14.2.4)
    bad = api["M"].patch(path, json={"expiresAt": "tomorrow"})
    assert bad.status_code == 400 and bad.json()["type"].endswith("/BadRequestData")
    assert api["M"].delete(path).status_code == 204
    for r in (api["M"].get(path), api["M"].delete(path), api["M"].patch(path, json={"expiresAt": "2099-01-01T00:00:00Z"})):
        assert r.status_code == 404 and r.json()["type"].endswith("/ResourceNotFound"), r.text


def test_unknown_invalid_and_other_tenant_maps(brokers: Brokers, api: dict[str, httpx.Client]) -> None:
    r = api["M"].get("/entityMaps/urn:ngsi-ld:EntityMap:unknown")
    assert r.status_code == 404 and r.json()["type"].endswith("/ResourceNotFound")
    r = api["M"].get("/entityMaps/not a uri")
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    path = map_path(api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true"}))
    with httpx.Client(base_url=brokers.urls["M"] + API, headers={"NGSILD-Tenant": "elsewhere"}) as other:
        assert other.get(path).status_code == 404  # maps are per tenant
    r = api["M"].get("/entities", params={"type": "Sensor"},
                     headers={HEADER: f"{API}/entityMaps/urn:ngsi-ld:EntityMap:unknown"})
    assert r.status_code == 404, r.text
    r = api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true", "entityMapLifetime": "soon"})
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")
    r = api["M"].get("/entities", params={"type": "Sensor", "entityMap": "maybe"})
    assert r.status_code == 400 and r.json()["type"].endswith("/BadRequestData")


def test_an_expired_map_is_gone(api: dict[str, httpx.Client]) -> None:
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    got = api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true", "entityMapLifetime": "PT0.001S"})
    path = map_path(got)
    time.sleep(0.05)  # past its expiresAt (not a timing assertion: the map is expired whatever the delay)
    r = api["M"].get(path)
    assert r.status_code == 404 and r.json()["type"].endswith("/ResourceNotFound"), r.text
    r = api["M"].get("/entities", params={"type": "Sensor"}, headers={HEADER: got.headers[HEADER]})
    assert r.status_code == 404
    # an update to a past expiresAt expires it too
    path = map_path(api["M"].get("/entities", params={"type": "Sensor", "entityMap": "true"}))
    assert api["M"].patch(path, json={"expiresAt": "2000-01-01T00:00:00Z"}).status_code == 204
    assert api["M"].get(path).status_code == 404


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_map_survives_a_restart(store: str, tmp_path: Path) -> None:
    with store_url(store, tmp_path / "broker.db", "test_entitymaps") as url:
        port = free_port()
        proc = broker_process(tmp_path, port, log=tmp_path / "broker.log")
        proc.env = {"METROPOLE_BROKER_STORE": url}
        proc.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers={"NGSILD-Tenant": "maps"},
                              timeout=30) as client:
                create(client, sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
                path = map_path(client.get("/entities", params={"type": "Sensor", "entityMap": "true"}))
                proc.stop()
                proc.start()
                r = client.get(path)
                assert r.status_code == 200, r.text
                assert r.json()["entityMap"] == {"urn:ngsi-ld:Sensor:metro-1": ["@none"]}
        finally:
            proc.stop()


# ---------------------------------------------------------------------------- temporal queries (5.14.5, 5.7.4.4)

HISTORY = {"observationInterval": {"startAt": "2026-01-01T00:00:00Z"}}
AFTER = {"timerel": "after", "timeAt": "2026-11-01T00:00:00Z"}


def history(client: httpx.Client, entity_id: str, value: int) -> None:
    r = client.post("/temporal/entities", json={"id": entity_id, "type": "Sensor", "no2": [
        {"type": "Property", "value": value, "observedAt": "2026-11-26T07:00:00Z"}]})
    assert r.status_code in (201, 204), r.text


def test_temporal_query_with_entity_map_lists_local_and_registered_entities(brokers: Brokers,
                                                                             api: dict[str, httpx.Client],
                                                                             tenant: str) -> None:
    history(api["A"], "urn:ngsi-ld:Sensor:aix-1", 41)
    history(api["M"], "urn:ngsi-ld:Sensor:metro-1", 20)
    reg = register(api, "M", brokers.urls["A"], tenant, operations=["queryTemporal", "createEntityMapQueryTemporal"],
                   **HISTORY)
    got = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER, "entityMap": "true", "limit": "1"})
    assert ids(got) == {"urn:ngsi-ld:Sensor:aix-1"}  # a page of the map's entities
    path = map_path(got)
    body = api["M"].get(path).json()
    assert body["entityMap"] == {"urn:ngsi-ld:Sensor:aix-1": [reg], "urn:ngsi-ld:Sensor:metro-1": ["@none"]}
    # the town offers createEntityMapQueryTemporal: it made a map of its own, named in linkedMaps (5.14.5.4)
    town = httpx.get(body["linkedMaps"][reg], headers={"NGSILD-Tenant": tenant})
    assert town.status_code == 200 and town.json()["entityMap"] == {"urn:ngsi-ld:Sensor:aix-1": ["@none"]}
    # the next page is answered from the map: an entity created since is left out
    history(api["M"], "urn:ngsi-ld:Sensor:metro-2", 5)
    second = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER, "limit": "1", "offset": "1",
                                                        "count": "true"}, headers={HEADER: got.headers[HEADER]})
    assert ids(second) == {"urn:ngsi-ld:Sensor:metro-1"}
    assert second.headers["NGSILD-Results-Count"] == "2" and second.headers[HEADER] == got.headers[HEADER]
    # POST /temporal/entityOperations/query makes one too (entityMap in the Query, 5.2.23)
    posted = api["M"].post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Sensor"}], "temporalQ": AFTER, "entityMap": True})
    assert set(api["M"].get(map_path(posted)).json()["entityMap"]) == {
        "urn:ngsi-ld:Sensor:aix-1", "urn:ngsi-ld:Sensor:metro-1", "urn:ngsi-ld:Sensor:metro-2"}


def test_temporal_query_with_an_unknown_map_makes_a_new_one(brokers: Brokers, api: dict[str, httpx.Client],
                                                            tenant: str) -> None:
    history(api["A"], "urn:ngsi-ld:Sensor:aix-1", 41)
    reg = register(api, "M", brokers.urls["A"], tenant, operations=["queryTemporal"], **HISTORY)
    unknown = f"{API}/entityMaps/urn:ngsi-ld:EntityMap:gone"
    got = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER}, headers={HEADER: unknown})
    assert ids(got) == {"urn:ngsi-ld:Sensor:aix-1"}
    assert got.headers[HEADER] != unknown  # 5.7.4.4: "a new EntityMap shall be created"
    body = api["M"].get(map_path(got)).json()
    # the source does not offer createEntityMapQueryTemporal: not asked for a map of its own
    assert body["entityMap"] == {"urn:ngsi-ld:Sensor:aix-1": [reg]} and body["linkedMaps"] == {}
    assert api["A"].get("/temporal/entities", params={"type": "Sensor", **AFTER}).status_code == 200
    bad = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER, "entityMap": "maybe"})
    assert bad.status_code == 400, bad.text


# ---------------------------------------------------------------------------- Retrieve Entity (5.7.1.4, 6.5.3.1)


def test_retrieve_entity_with_entity_map(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    create(api["M"], sensor("urn:ngsi-ld:Sensor:both", no2=20))
    create(api["A"], sensor("urn:ngsi-ld:Sensor:both", no2=20, pm10=3))
    reg = register(api, "M", brokers.urls["A"], tenant)
    got = api["M"].get("/entities/urn:ngsi-ld:Sensor:both", params={"entityMap": "true"})
    path = map_path(got)  # 6.5.3.1: the NGSILD-EntityMap header of the map made (5.7.1.4)
    assert got.json()["pm10"]["value"] == 3
    assert api["M"].get(path).json()["entityMap"] == {"urn:ngsi-ld:Sensor:both": ["@none", reg]}
    again = api["M"].get("/entities/urn:ngsi-ld:Sensor:both", headers={HEADER: got.headers[HEADER]})
    assert again.status_code == 200 and again.headers[HEADER] == got.headers[HEADER]  # the map used
    # a map that cannot be found: "a new EntityMap shall be created" (5.7.1.4)
    unknown = f"{API}/entityMaps/urn:ngsi-ld:EntityMap:gone"
    fresh = api["M"].get("/entities/urn:ngsi-ld:Sensor:both", headers={HEADER: unknown})
    assert map_path(fresh) != unknown[len(API):]
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:both", params={"entityMap": "maybe"}).status_code == 400
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:nowhere", params={"entityMap": "true"}).status_code == 404


def test_temporal_query_with_a_map_asks_only_the_registrations_it_lists(brokers: Brokers,
                                                                        api: dict[str, httpx.Client],
                                                                        tenant: str) -> None:
    history(api["A"], "urn:ngsi-ld:Sensor:aix-1", 41)
    register(api, "M", brokers.urls["A"], tenant, operations=["queryTemporal", "createEntityMapQueryTemporal"],
             **HISTORY)
    made = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER, "entityMap": "true"})
    location = made.headers[HEADER]
    assert "NGSILD-Warning" not in made.headers
    down = f"http://127.0.0.1:{free_port()}"  # registered after the map was made; nothing listens there
    register(api, "M", down, tenant, operations=["queryTemporal"], **HISTORY)
    fresh = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER})
    assert down in fresh.headers["NGSILD-Warning"]  # asked when no map is used
    # 5.7.4.4: "only the retrieved EntityMap shall be used to determine which Context Source Registrations match"
    used = api["M"].get("/temporal/entities", params={"type": "Sensor", **AFTER}, headers={HEADER: location})
    assert ids(used) == {"urn:ngsi-ld:Sensor:aix-1"} and used.headers[HEADER] == location
    assert "NGSILD-Warning" not in used.headers
