"""/entityOperations/* through a real socket, on both stores (clauses 6.14-6.17, 6.23, 6.31, 5.5.11)."""

from __future__ import annotations

import httpx
import orjson

from tests.broker.conftest import new_id


def entity(entity_id: str, **attrs: object) -> dict:
    return {"id": entity_id, "type": "NoiseLevelObserved", **attrs}


def get(client: httpx.Client, entity_id: str, **params: str) -> dict:
    r = client.get(f"/entities/{entity_id}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_201_then_207_with_errors(client: httpx.Client) -> None:
    a, b = new_id(), new_id()
    r = client.post("/entityOperations/create", json=[entity(a, LAeq=50), entity(b, LAeq=60)])
    assert r.status_code == 201
    assert sorted(r.json()) == sorted([a, b])
    c = new_id()
    r = client.post("/entityOperations/create", json=[entity(a), entity(c), entity(c), {"id": "bad id", "type": "T"}])
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == [c]
    errors = [(e["entityId"], e["error"]["type"].rsplit("/", 1)[1]) for e in body["errors"]]
    assert (a, "AlreadyExists") in errors and (c, "AlreadyExists") in errors
    assert ("bad id", "BadRequestData") in errors
    assert all(e["error"]["status"] in (400, 409) for e in body["errors"])


def test_empty_or_non_array_batch_is_400(client: httpx.Client) -> None:
    for op in ("create", "upsert", "update", "delete", "merge"):
        assert client.post(f"/entityOperations/{op}", json=[]).status_code == 400, op
        assert client.post(f"/entityOperations/{op}", json={"id": "urn:a:b"}).status_code == 400, op
    assert client.post("/entityOperations/create", json=[None]).status_code == 400


def test_upsert_replace_default(client: httpx.Client) -> None:
    a, b = new_id(), new_id()
    r = client.post("/entityOperations/upsert", json=[entity(a, LAeq=50, LAmax=70)])
    assert r.status_code == 201 and r.json() == [a]
    r = client.post("/entityOperations/upsert", json=[entity(a, LAeq=55), entity(b, LAeq=40)])
    assert r.status_code == 201 and r.json() == [b]
    got = get(client, a)
    assert got["LAeq"]["value"] == 55 and "LAmax" not in got  # replaced
    r = client.post("/entityOperations/upsert", json=[entity(a, LAeq=1), entity(a, LAeq=2)])
    assert r.status_code == 204  # all existed
    assert get(client, a)["LAeq"]["value"] == 2  # the later entry wins (clause 5.5.11.2)


def test_upsert_update_mode(client: httpx.Client) -> None:
    a = new_id()
    client.post("/entityOperations/upsert", json=[entity(a, LAeq=50, LAmax=70)])
    created = get(client, a, options="sysAttrs")
    r = client.post("/entityOperations/upsert", params={"options": "update"}, json=[entity(a, LAeq=55), entity(a, LAmin=30)])
    assert r.status_code == 204, r.text
    got = get(client, a, options="sysAttrs")
    assert got["LAeq"]["value"] == 55 and got["LAmax"]["value"] == 70 and got["LAmin"]["value"] == 30
    assert got["createdAt"] == created["createdAt"]
    b = new_id()
    r = client.post("/entityOperations/upsert", params={"options": "update"}, json=[entity(b, LAeq=1), entity(b, LAmax=2)])
    assert r.status_code == 201 and r.json() == [b]
    got = get(client, b)
    assert got["LAeq"]["value"] == 1 and got["LAmax"]["value"] == 2
    assert client.post("/entityOperations/upsert", params={"options": "update,replace"}, json=[entity(b)]).status_code == 400


def test_upsert_with_errors_is_207(client: httpx.Client) -> None:
    a = new_id()
    r = client.post("/entityOperations/upsert", json=[entity(a, LAeq=1), {"id": new_id()}])
    assert r.status_code == 207
    assert r.json()["success"] == [a] and len(r.json()["errors"]) == 1


def test_update_and_no_overwrite(client: httpx.Client) -> None:
    a, missing = new_id(), new_id()
    client.post("/entityOperations/create", json=[entity(a, LAeq=50)])
    r = client.post("/entityOperations/update", json=[entity(a, LAeq=51, LAmax=80)])
    assert r.status_code == 204, r.text
    r = client.post("/entityOperations/update", params={"options": "noOverwrite"}, json=[entity(a, LAeq=99, LAmin=10)])
    # clause 5.6.9.4: each entity is an Append Attributes; an attribute left alone by noOverwrite is an error
    assert r.status_code == 207, r.text
    assert r.json()["errors"][0]["entityId"] == a and "LAeq" in r.json()["errors"][0]["error"]["detail"]
    assert client.post("/entityOperations/update", params={"options": "noOverwrite"},
                       json=[entity(a, LAdaily=1)]).status_code == 204
    got = get(client, a)
    assert got["LAeq"]["value"] == 51 and got["LAmax"]["value"] == 80 and got["LAmin"]["value"] == 10
    r = client.post("/entityOperations/update", json=[entity(a, LAeq=52), entity(missing, LAeq=1)])
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == [a]
    assert body["errors"][0]["entityId"] == missing
    assert body["errors"][0]["error"]["type"].endswith("ResourceNotFound")


def test_merge(client: httpx.Client) -> None:
    a, missing = new_id(), new_id()
    client.post("/entityOperations/create", json=[entity(a, LAeq={"type": "Property", "value": 50, "unitCode": "2N"}, LAmax=90)])
    r = client.post("/entityOperations/merge", json=[entity(a, LAeq=51), entity(a, LAmax="urn:ngsi-ld:null")])
    assert r.status_code == 204, r.text
    got = get(client, a)
    assert got["LAeq"] == {"type": "Property", "value": 51, "unitCode": "2N"}
    assert "LAmax" not in got
    r = client.post("/entityOperations/merge", json=[entity(missing, LAeq=1)])
    assert r.status_code == 207 and r.json()["success"] == []


def test_delete_with_duplicates(client: httpx.Client) -> None:
    a, b = new_id(), new_id()
    client.post("/entityOperations/create", json=[entity(a), entity(b)])
    r = client.post("/entityOperations/delete", json=[a, b])
    assert r.status_code == 204
    client.post("/entityOperations/create", json=[entity(a)])
    r = client.post("/entityOperations/delete", json=[a, a, "not-a-uri"])
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == [a]
    assert [e["entityId"] for e in body["errors"]] == ["not-a-uri", a]
    assert client.get(f"/entities/{a}").status_code == 404


def test_query_post(client: httpx.Client) -> None:
    a, b, c = new_id("Noise"), new_id("Noise"), new_id("Air")
    client.post("/entityOperations/create", json=[entity(a, LAeq=50), entity(b, LAeq=70), {"id": c, "type": "AirQualityObserved", "no2": 3}])
    r = client.post("/entityOperations/query", json={"type": "Query", "entities": [{"type": "NoiseLevelObserved"}], "q": "LAeq>60"})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == [b]
    r = client.post("/entityOperations/query", params={"options": "keyValues", "count": "true"},
                    json={"type": "Query", "entities": [{"id": a, "type": "NoiseLevelObserved"}, {"type": "AirQualityObserved"}]})
    assert r.status_code == 200
    assert sorted(e["id"] for e in r.json()) == sorted([a, c])
    assert r.headers["NGSILD-Results-Count"] == "2"
    assert {e["id"]: e for e in r.json()}[a]["LAeq"] == 50
    assert client.post("/entityOperations/query", json={"entities": []}).status_code == 400
    r = client.post("/entityOperations/query", json={"type": "Query", "q": "LAeq>>1"})
    assert r.status_code == 400


def test_batch_upsert_throughput(client: httpx.Client) -> None:
    """A smoke check on the hot path: 2,000 entities in one upsert are all stored and readable."""
    ids = [new_id("Bulk") for _ in range(2000)]
    body = [{"id": i, "type": "NoiseLevelObserved", "LAeq": {"type": "Property", "value": n, "observedAt": "2026-11-26T06:00:00Z"},
             "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.4 + n / 1e4, 43.5]}}}
            for n, i in enumerate(ids)]
    r = client.post("/entityOperations/upsert", json=body)
    assert r.status_code == 201 and len(r.json()) == 2000
    r = client.get("/entities", params={"type": "NoiseLevelObserved", "count": "true", "limit": "1"})
    assert r.headers["NGSILD-Results-Count"] == "2000"


def test_each_entity_brings_its_own_context(client: httpx.Client, context_server) -> None:
    ld = {"Content-Type": "application/ld+json"}
    url = context_server.publish({"Sensor": "https://example.org/Sensor"})
    a, b, c, d = new_id(), new_id(), new_id(), new_id()
    body = [{**entity(a), "type": "Sensor", "@context": url},
            {**entity(b), "@context": [url]},
            entity(c),  # application/ld+json without an @context: that entity alone is refused
            {**entity(d), "@context": "http://127.0.0.1:1/unreachable.jsonld"}]
    r = client.post("/entityOperations/create", content=orjson.dumps(body), headers=ld)
    assert r.status_code == 207, r.text
    assert sorted(r.json()["success"]) == sorted([a, b])
    errors = {e["entityId"]: e["error"] for e in r.json()["errors"]}
    assert errors[c]["type"].endswith("/BadRequestData")
    assert errors[d]["type"].endswith("/LdContextNotAvailable") and errors[d]["status"] == 503
    assert get(client, a)["type"] == "https://example.org/Sensor"
    # application/json: an entity carrying an @context is refused, the others take the Link header's
    e, f = new_id(), new_id()
    r = client.post("/entityOperations/upsert", json=[{**entity(e), "@context": url}, entity(f)])
    assert r.status_code == 207 and r.json()["success"] == [f]
    assert r.json()["errors"][0]["entityId"] == e


def test_delete_in_json_ld_needs_no_context(client: httpx.Client) -> None:
    a = new_id()
    assert client.post("/entityOperations/create", json=[entity(a)]).status_code == 201
    r = client.post("/entityOperations/delete", content=orjson.dumps([a]),
                    headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 204


def test_json_null_is_an_entity_error(client: httpx.Client) -> None:
    a = new_id()
    assert client.post("/entityOperations/create", json=[entity(a, LAeq=50)]).status_code == 201
    for op in ("update", "merge"):
        r = client.post(f"/entityOperations/{op}", json=[entity(a, LAeq={"type": "Property", "value": None})])
        assert r.status_code == 207, r.text
        assert r.json()["errors"][0]["error"]["type"].endswith("/BadRequestData")
    assert get(client, a)["LAeq"]["value"] == 50


def _at(second: int) -> str:
    return f"2026-03-01T08:00:{second:02d}.000Z"


def _instance(entity_id: str, value: int, second: int) -> dict:
    return {"id": entity_id, "type": "Thing", "no2": {"type": "Property", "value": value, "observedAt": _at(second)}}


def _history(client: httpx.Client, entity_id: str) -> list:
    r = client.get(f"/temporal/entities/{entity_id}", params={"format": "temporalValues", "attrs": "no2"})
    assert r.status_code == 200, r.text
    return r.json()["no2"]["values"]


def test_repeated_id_keeps_every_instance_in_history(client: httpx.Client) -> None:
    """Clause 5.5.11.2: an upsert with one entity 5 times: current state the last, history all 5 in order."""
    for params in ({}, {"options": "update"}):
        eid = new_id()
        r = client.post("/entityOperations/upsert", params=params, json=[_instance(eid, 40 + k, k) for k in range(5)])
        assert r.status_code == 201, r.text
        assert get(client, eid)["no2"] == {"type": "Property", "value": 44, "observedAt": _at(4)}
        assert _history(client, eid) == [[40 + k, _at(k)] for k in range(5)], params
        # a second batch on the now existing entity: its instances follow the first batch's
        r = client.post("/entityOperations/upsert", params=params, json=[_instance(eid, 50 + k, 10 + k) for k in range(3)])
        assert r.status_code == 204, r.text
        assert _history(client, eid) == [[40 + k, _at(k)] for k in range(5)] + [[50 + k, _at(10 + k)] for k in range(3)]
        assert get(client, eid)["no2"]["value"] == 52


def test_repeated_id_in_update_and_merge_keeps_every_instance(client: httpx.Client) -> None:
    """Clauses 5.5.11.3 and 5.5.11.5: each instance of a batch update or merge is a change of its own."""
    for op in ("update", "merge"):
        eid = new_id()
        assert client.post("/entities", json=_instance(eid, 1, 0)).status_code == 201
        body = [{"id": eid, "type": "Thing", "no2": {"type": "Property", "value": 10 + k, "observedAt": _at(1 + k)}}
                for k in range(4)]
        r = client.post(f"/entityOperations/{op}", json=body)
        assert r.status_code == 204, r.text
        assert _history(client, eid) == [[1, _at(0)]] + [[10 + k, _at(1 + k)] for k in range(4)], op
        assert get(client, eid)["no2"]["value"] == 13


def test_repeated_id_with_an_instance_in_error_keeps_the_others(client: httpx.Client) -> None:
    """An instance refused (noOverwrite) changes nothing; those around it are each recorded, in order."""
    eid = new_id()
    assert client.post("/entities", json=_instance(eid, 1, 0)).status_code == 201
    body = [{"id": eid, "type": "Thing", "pm10": {"type": "Property", "value": 7, "observedAt": _at(1)}},
            {"id": eid, "type": "Thing", "pm10": {"type": "Property", "value": 8, "observedAt": _at(2)}},
            {"id": eid, "type": "Thing", "pm25": {"type": "Property", "value": 3, "observedAt": _at(3)}}]
    r = client.post("/entityOperations/update", params={"options": "noOverwrite"}, json=body)
    assert r.status_code == 207, r.text
    assert [e["entityId"] for e in r.json()["errors"]] == [eid]
    got = get(client, eid)
    assert got["pm10"]["value"] == 7 and got["pm25"]["value"] == 3
    r = client.get(f"/temporal/entities/{eid}", params={"format": "temporalValues", "attrs": "pm10,pm25"})
    assert r.json()["pm10"]["values"] == [[7, _at(1)]] and r.json()["pm25"]["values"] == [[3, _at(3)]]


def test_repeated_id_without_observed_at_shares_one_history_key(client: httpx.Client) -> None:
    """Clause 5.5.11.0: every instance of a batch has the same modifiedAt, and history keys on time.

    Instances with no observedAt of their own are all kept by the change log (and notified),
    but they land on one history key: the last instance is the one history keeps.
    """
    eid = new_id()
    body = [{"id": eid, "type": "Thing", "no2": {"type": "Property", "value": k}} for k in range(3)]
    assert client.post("/entityOperations/upsert", json=body).status_code == 201
    values = _history(client, eid)
    assert [v for v, _ in values] == [2]
