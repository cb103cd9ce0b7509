"""The temporal API (clauses 5.6.11-5.6.16, 5.7.3, 5.7.4, 6.18-6.22, 6.24) on the real broker, both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from broker.store import open_store
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.runtime import open_history
from broker.temporal.storage import TimeRange
from tests import services
from tests.broker.conftest import new_id
from tests.pg import adrop_schema, schema_name

T = "Thing"
JSON = {"Content-Type": "application/json"}


def iso(hour: int, minute: int = 0, day: int = 1) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:{minute:02d}:00.000Z"


def bound(hour: int, day: int = 1) -> str:
    """A period bound the broker computes: whole seconds, no fraction."""
    return f"2026-01-{day:02d}T{hour:02d}:00:00Z"


def measure(value: Any, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at, **extra}


def temporal_entity(entity_id: str, **attrs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": entity_id, "type": T, **attrs}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_simplified_values_wrap_language_vocab_and_json_members(client: httpx.Client) -> None:
    """Clause 4.5.9: {"languageMap": ...}, {"vocab": ...}, {"json": ...} as first elements; values and objects bare."""
    eid = new_id()
    body = {
        "id": eid, "type": T,
        "says": {"type": "LanguageProperty", "languageMap": {"en": "yes", "fr": "oui"}, "observedAt": iso(6)},
        "gender": {"type": "VocabProperty", "vocab": "Male", "observedAt": iso(6)},
        "tickets": {"type": "JsonProperty", "json": [{"id": "t1"}], "observedAt": iso(6)},
        "spouse": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1", "observedAt": iso(6)},
        "speed": measure(3, iso(6)),
    }
    assert client.post("/entities", json=body).status_code == 201
    got = client.get(f"/temporal/entities/{eid}", params={"format": "temporalValues"}).json()
    assert got["says"] == {"type": "LanguageProperty", "languageMaps": [[{"languageMap": {"en": "yes", "fr": "oui"}}, iso(6)]]}
    assert got["gender"] == {"type": "VocabProperty", "vocabs": [[{"vocab": "Male"}, iso(6)]]}
    assert got["tickets"] == {"type": "JsonProperty", "jsons": [[{"json": [{"id": "t1"}]}, iso(6)]]}
    assert got["spouse"] == {"type": "Relationship", "objects": [["urn:ngsi-ld:Person:1", iso(6)]]}
    assert got["speed"] == {"type": "Property", "values": [[3, iso(6)]]}


def test_history_follows_context_writes(client: httpx.Client) -> None:
    eid = new_id()
    r = client.post("/entities", json={"id": eid, "type": T, "no2": measure(40, iso(6)), "name": {"type": "Property", "value": "a"}})
    assert r.status_code == 201
    assert client.patch(f"/entities/{eid}/attrs/no2", json={"value": 41, "observedAt": iso(7)}).status_code == 204
    assert client.patch(f"/entities/{eid}/attrs/no2", json={"value": 42, "observedAt": iso(8)}).status_code == 204
    # read-your-writes: no waiting needed
    r = client.get(f"/temporal/entities/{eid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == eid and body["type"] == T
    assert [i["value"] for i in body["no2"]] == [40, 41, 42]
    assert [i["observedAt"] for i in body["no2"]] == [iso(6), iso(7), iso(8)]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:") for i in body["no2"])
    assert [i["value"] for i in as_list(body["name"])] == ["a"]  # unchanged: recorded once

    r = client.get(f"/temporal/entities/{eid}", params={"options": "temporalValues", "attrs": "no2"})
    # clause 4.5.9: one instance series is an object, not an array
    assert r.json()["no2"] == {"type": "Property", "values": [[40, iso(6)], [41, iso(7)], [42, iso(8)]]}
    assert "name" not in r.json()

    # deleting the attribute, then the entity, is recorded as deletedAt instances
    assert client.delete(f"/entities/{eid}/attrs/no2").status_code == 204
    assert client.delete(f"/entities/{eid}").status_code == 204
    r = client.get(f"/temporal/entities/{eid}", params={"timeproperty": "modifiedAt", "timerel": "after", "timeAt": iso(0)})
    no2 = r.json()["no2"]
    assert no2[-1]["value"] == "urn:ngsi-ld:null" and "deletedAt" in no2[-1]
    assert as_list(r.json()["name"])[-1]["value"] == "urn:ngsi-ld:null"


def test_timerel_lastn_and_entity_selection(client: httpx.Client) -> None:
    a, b, c = new_id(), new_id(), new_id()
    for eid, kind in ((a, T), (b, T), (c, "Other")):
        body = {"id": eid, "type": kind, "no2": [measure(h, iso(h)) for h in range(6)]}
        assert client.post("/temporal/entities", json=body).status_code == 201
    base = {"type": T}
    r = client.get("/temporal/entities", params={**base, "timerel": "before", "timeAt": iso(2)})
    assert r.status_code == 200
    got = {e["id"]: [i["value"] for i in as_list(e["no2"])] for e in r.json()}
    assert got == {a: [0, 1], b: [0, 1]}
    r = client.get("/temporal/entities", params={**base, "timerel": "after", "timeAt": iso(4), "id": a})
    assert [[i["value"] for i in as_list(e["no2"])] for e in r.json()] == [[4, 5]]
    r = client.get("/temporal/entities", params={"type": "Other", "timerel": "between", "timeAt": iso(1), "endTimeAt": iso(3)})
    assert [i["value"] for i in r.json()[0]["no2"]] == [1, 2]
    r = client.get("/temporal/entities", params={**base, "lastN": 2, "count": "true", "limit": 1})
    assert r.headers["NGSILD-Results-Count"] == "2" and len(r.json()) == 1
    assert [i["value"] for i in r.json()[0]["no2"]] == [4, 5]
    r = client.get("/temporal/entities", params={"idPattern": c[-6:] + "$", "type": "Other", "timerel": "after", "timeAt": iso(5)})
    assert [e["id"] for e in r.json()] == [c]
    assert client.get("/temporal/entities").status_code == 400  # no selection
    # clause 5.7.4.4: ids or an idPattern alone are a too wide query; a type, attrs, q, a geo-query or local is needed
    assert client.get("/temporal/entities", params={"id": a, "timerel": "after", "timeAt": iso(0)}).status_code == 400
    assert client.get("/temporal/entities", params={"idPattern": ".*", "timerel": "after", "timeAt": iso(0)}).status_code == 400
    r = client.get("/temporal/entities", params={"id": a, "attrs": "no2", "timerel": "after", "timeAt": iso(5)})
    assert [e["id"] for e in r.json()] == [a]
    assert client.get("/temporal/entities", params={**base, "timerel": "between", "timeAt": iso(1)}).status_code == 400
    assert client.get("/temporal/entities", params={**base, "timerel": "whenever", "timeAt": iso(1)}).status_code == 400
    assert client.get("/temporal/entities", params={**base, "lastN": "0"}).status_code == 400


def test_aggregated_values(client: httpx.Client) -> None:
    eid = new_id()
    values = [(0, 10, 2), (0, 40, 4), (1, 5, 6), (1, 35, 6), (1, 50, 9)]  # (hour, minute, value)
    body = temporal_entity(eid, no2=[measure(v, iso(h, m)) for h, m, v in values])
    assert client.post("/temporal/entities", json=body).status_code == 201
    params = {"id": eid, "type": T, "timerel": "between", "timeAt": iso(0), "endTimeAt": iso(2), "options": "aggregatedValues",
              "aggrMethods": "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq", "aggrPeriodDuration": "PT1H"}
    r = client.get("/temporal/entities", params=params)
    assert r.status_code == 200, r.text
    no2 = r.json()[0]["no2"]
    assert no2["type"] == "Property"
    assert no2["totalCount"] == [[2, bound(0), bound(1)], [3, bound(1), bound(2)]]
    assert no2["distinctCount"] == [[2, bound(0), bound(1)], [2, bound(1), bound(2)]]
    assert no2["sum"][1][0] == 21 and no2["avg"][0][0] == 3 and no2["min"][1][0] == 6 and no2["max"][1][0] == 9
    assert no2["sumsq"][0][0] == 20
    assert abs(no2["stddev"][1][0] - 1.7320508) < 1e-6
    r = client.get("/temporal/entities", params={**params, "aggrPeriodDuration": "PT0S", "aggrMethods": "totalCount"})
    assert r.json()[0]["no2"]["totalCount"] == [[5, bound(0), bound(2)]]
    r = client.post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"id": eid, "type": T}], "attrs": ["no2"],
        "temporalQ": {"timerel": "after", "timeAt": iso(1)}, "aggrMethods": ["max"], "aggrPeriodDuration": "P1D",
    }, params={"options": "aggregatedValues"})
    assert r.status_code == 200, r.text
    assert r.json()[0]["no2"]["max"] == [[9, bound(1), bound(1, day=2)]]
    assert client.get("/temporal/entities", params={**params, "aggrMethods": "median"}).status_code == 400
    assert client.get("/temporal/entities", params={**params, "aggrPeriodDuration": "1 hour"}).status_code == 400


def test_same_instance_twice_is_stored_once(client: httpx.Client) -> None:
    eid = new_id()
    body = temporal_entity(eid, no2=[measure(1, iso(1)), measure(2, iso(2))])
    assert client.post("/temporal/entities", json=body).status_code == 201
    assert client.post("/temporal/entities", json=body).status_code == 204
    more = {"no2": [measure(2, iso(2)), measure(3, iso(3)), measure(7, iso(3), datasetId="urn:ngsi-ld:Dataset:b")]}
    assert client.post(f"/temporal/entities/{eid}/attrs", json=more).status_code == 204
    r = client.get(f"/temporal/entities/{eid}", params={"options": "temporalValues"})
    assert r.json()["no2"] == [
        {"type": "Property", "values": [[1, iso(1)], [2, iso(2)], [3, iso(3)]]},
        {"type": "Property", "values": [[7, iso(3)]], "datasetId": "urn:ngsi-ld:Dataset:b"},
    ]
    assert client.post(f"/temporal/entities/{new_id()}/attrs", json=more).status_code == 404


def test_delete_and_patch_history(client: httpx.Client) -> None:
    eid = new_id()
    body = temporal_entity(eid, no2=[measure(1, iso(1)), measure(2, iso(2)), measure(5, iso(2), datasetId="urn:ngsi-ld:Dataset:b")],
                           o3=[measure(9, iso(1))])
    assert client.post("/temporal/entities", json=body).status_code == 201
    instances = client.get(f"/temporal/entities/{eid}").json()["no2"]
    first = instances[0]["instanceId"]
    r = client.patch(f"/temporal/entities/{eid}/attrs/no2/{first}", json={"value": 100})
    assert r.status_code == 204, r.text
    assert client.patch(f"/temporal/entities/{eid}/attrs/no2/urn:ngsi-ld:nothing", json={"value": 1}).status_code == 404
    assert [i["value"] for i in client.get(f"/temporal/entities/{eid}").json()["no2"]] == [100, 2, 5]
    assert client.delete(f"/temporal/entities/{eid}/attrs/no2").status_code == 204  # the default instances only
    assert [i["value"] for i in as_list(client.get(f"/temporal/entities/{eid}").json()["no2"])] == [5]
    assert client.delete(f"/temporal/entities/{eid}/attrs/no2", params={"deleteAll": "true"}).status_code == 204
    assert client.delete(f"/temporal/entities/{eid}/attrs/no2").status_code == 404
    assert "no2" not in client.get(f"/temporal/entities/{eid}").json()
    assert client.delete(f"/temporal/entities/{eid}").status_code == 204
    assert client.get(f"/temporal/entities/{eid}").status_code == 404
    assert client.delete(f"/temporal/entities/{eid}").status_code == 404
    assert client.get("/temporal/entities/not-a-uri").status_code == 400


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_recorder_replay_stores_each_instance_once_and_resumes(kind: str, tmp_path: Path) -> None:
    """A crash between history and cursor is harmless: replaying the log stores nothing twice; the cursor persists."""
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'b.db'}", None
    else:
        schema = schema_name("test_rec")
        url = f"{services.require_postgres()}?schema={schema}"

    async def body() -> None:
        store = open_store(url)
        await store.open()
        history = open_history(store)
        await history.open()
        try:
            eid = "urn:ngsi-ld:Thing:r1"
            await store.insert("", [{"id": eid, "type": ["urn:T"], "urn:no2": [measure(1, iso(1), modifiedAt=iso(1))]}], iso(1))
            await store.upsert_replace("", [{"id": eid, "type": ["urn:T"], "urn:no2": [measure(2, iso(2), modifiedAt=iso(2))]}], iso(2))
            first = HistoryRecorder(store, history)
            await first.start()
            await first.catch_up()
            await first.stop()
            assert first.cursor == await store.last_change_seq() == await history.load_cursor("temporal")
            replay = HistoryRecorder(store, history)  # as if the cursor had not been saved
            await replay.catch_up()
            assert replay.cursor == first.cursor
            hits = await history.instances("", [eid], None, TimeRange(), 100, False)
            assert [orjson.loads(h.instance)["value"] for h in hits] == [1, 2]
        finally:
            await history.close()
            await store.close()
            if schema is not None:
                await adrop_schema(schema)

    asyncio.run(body())
