"""Which temporal entities and instances a read returns (clauses 5.7.3.4, 5.7.4.4, 4.21, 6.3.12, 6.3.20), both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.temporal.model import EntityRow
from broker.temporal.postgres import PostgresHistory
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import HistoryStorage
from tests import services
from tests.broker.conftest import new_id
from tests.pg import acreate_schema, adrop_schema, schema_name

INVALID = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
BAD = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def at(hour: int, day: int = 1) -> str:
    return f"2026-02-{day:02d}T{hour:02d}:00:00.000Z"


def prop(value: Any, hour: int, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(hour), **extra}


def make(client: httpx.Client, kind: str = "Bus", **attrs: Any) -> str:
    eid = new_id(kind)
    assert client.post("/temporal/entities", json={"id": eid, "type": kind, **attrs}).status_code == 201
    return eid


def ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(e["id"] for e in r.json())


def test_only_entities_with_data_in_the_range(client: httpx.Client) -> None:
    """S1: an entity none of whose concerned instances lie in the range is not part of the answer."""
    early = make(client, speed=[prop(1, 1), prop(2, 2)], fuel=[prop(9, 9)])
    late = make(client, speed=[prop(3, 8)])
    after = {"type": "Bus", "timerel": "after", "timeAt": at(5)}
    assert ids(client.get("/temporal/entities", params=after)) == sorted([early, late])
    assert ids(client.get("/temporal/entities", params={**after, "attrs": "speed"})) == [late]
    assert ids(client.get("/temporal/entities", params={**after, "timeAt": at(10)})) == []
    # retrieve: nothing in the range, or none of the asked attributes, is 404 (clause 5.7.3.4)
    assert client.get(f"/temporal/entities/{late}", params={"timerel": "before", "timeAt": at(1)}).status_code == 404
    assert client.get(f"/temporal/entities/{late}", params={"attrs": "unknown"}).status_code == 404
    assert client.get(f"/temporal/entities/{late}", params={"attrs": "speed"}).status_code == 200


def test_q_and_geo_match_instances_in_the_range(client: httpx.Client) -> None:
    """S2, S3: q and geo-queries are checked on the instances in the range, not on a current state.

    These entities exist only in history (written through the temporal API).
    """
    fast = make(client, speed=[prop(120, 1), prop(40, 3)])
    slow = make(client, speed=[prop(30, 1), prop(50, 3)])
    params = {"type": "Bus", "q": "speed>100"}
    assert ids(client.get("/temporal/entities", params=params)) == [fast]
    # every instance of a matching entity is shown, not only those meeting q
    body = client.get("/temporal/entities", params=params).json()
    assert [i["value"] for i in body[0]["speed"]] == [120, 40]
    assert ids(client.get("/temporal/entities", params={**params, "timerel": "after", "timeAt": at(2)})) == []
    near = make(client, location=[{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29]},
                                   "observedAt": at(1)}])
    make(client, location=[{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.35, 48.85]},
                            "observedAt": at(1)}])
    geo = {"type": "Bus", "georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[5.37,43.29]"}
    assert ids(client.get("/temporal/entities", params=geo)) == [near]
    assert slow not in ids(client.get("/temporal/entities", params=params))


def test_several_selectors_of_a_post_query(client: httpx.Client) -> None:
    bus = make(client, "Bus", speed=[prop(1, 1)])
    tram = make(client, "Tram", speed=[prop(1, 1)])
    make(client, "Metro", speed=[prop(1, 1)])
    r = client.post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Bus", "id": bus}, {"type": "Tram", "id": tram}],
        "temporalQ": {"timerel": "after", "timeAt": at(0)}})
    assert ids(r) == sorted([bus, tram])


def test_local_and_order_by(client: httpx.Client) -> None:
    """Clause 5.7.4.4: local=true needs no selector; orderBy only on id. Without local=true orderBy is taken
    too: with no context source registrations every query runs on local data (clause 5.5.13), as on /entities."""
    a, b = make(client, speed=[prop(1, 1)]), make(client, speed=[prop(1, 1)])
    r = client.get("/temporal/entities", params={"local": "true", "orderBy": "id;desc", "timerel": "after", "timeAt": at(0)})
    assert [e["id"] for e in r.json()] == sorted([a, b], reverse=True)
    kind = "Bus"
    for order, expected in (("id", sorted([a, b])), ("id;desc", sorted([a, b], reverse=True))):
        r = client.get("/temporal/entities", params={"type": kind, "orderBy": order, "timerel": "after", "timeAt": at(0)})
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json() if e["id"] in (a, b)] == expected
    for params in ({"local": "true", "orderBy": "speed"}, {"type": kind, "orderBy": "speed"},
                   {"type": kind, "orderBy": "id,type"}):
        r = client.get("/temporal/entities", params=params)
        assert r.status_code == 400 and r.json()["type"].endswith("BadRequestData"), r.text


def test_dataset_id_selects_instances(client: httpx.Client) -> None:
    eid = make(client, fuel=[prop(1, 1), prop(2, 1, datasetId="urn:ngsi-ld:Dataset:b"), prop(3, 2, datasetId="urn:ngsi-ld:Dataset:c")])
    r = client.get(f"/temporal/entities/{eid}", params={"datasetId": "urn:ngsi-ld:Dataset:b", "format": "temporalValues"})
    assert r.json()["fuel"] == {"type": "Property", "datasetId": "urn:ngsi-ld:Dataset:b", "values": [[2, at(1)]]}
    r = client.get(f"/temporal/entities/{eid}", params={"datasetId": "@none,urn:ngsi-ld:Dataset:c"})
    assert sorted(i["value"] for i in r.json()["fuel"]) == [1, 3]
    assert client.get(f"/temporal/entities/{eid}", params={"datasetId": "urn:ngsi-ld:Dataset:z"}).status_code == 404
    r = client.get("/temporal/entities", params={"type": "Bus", "id": eid, "datasetId": "urn:ngsi-ld:Dataset:z"})
    assert r.status_code == 200 and r.json() == []


def test_pick_and_omit(client: httpx.Client) -> None:
    eid = make(client, speed=[prop(1, 1)], fuel=[prop(2, 1)])
    got = client.get(f"/temporal/entities/{eid}", params={"pick": "id,speed"}).json()
    assert set(got) == {"id", "speed"}
    got = client.get(f"/temporal/entities/{eid}", params={"omit": "type,speed"}).json()
    assert set(got) == {"id", "fuel"}
    got = client.get("/temporal/entities", params={"type": "Bus", "id": eid, "pick": "id"}).json()
    assert got == [{"id": eid}]
    # clause 4.21 and 5.7.3.4: nothing left is 404; contradictions are 400
    assert client.get(f"/temporal/entities/{eid}", params={"pick": "unknown"}).status_code == 404
    assert client.get(f"/temporal/entities/{eid}", params={"omit": "id,type,speed,fuel"}).status_code == 404
    for params in ({"pick": "speed", "omit": "speed"}, {"pick": "speed", "attrs": "fuel"}, {"omit": "speed", "attrs": "fuel"}):
        r = client.get(f"/temporal/entities/{eid}", params=params)
        assert r.status_code == 400 and r.json()["type"] == BAD, params


@pytest.mark.parametrize("params", [{"format": "invalidFormat"}, {"options": "invalidOptions"},
                                    {"options": "temporalValues,invalidOptions"},
                                    {"options": "temporalValues,aggregatedValues"},
                                    {"format": "temporalValues", "options": "aggregatedValues,invalidOptions"}])
def test_unknown_format_or_options_are_invalid_requests(client: httpx.Client, params: dict[str, str]) -> None:
    """Clause 6.3.20: options the operation does not support are InvalidRequest."""
    r = client.get("/temporal/entities", params={"type": "Bus", **params})
    assert r.status_code == 400 and r.json()["type"] == INVALID


def test_format_wins_over_options(client: httpx.Client) -> None:
    eid = make(client, speed=[prop(1, 1)])
    r = client.get(f"/temporal/entities/{eid}", params={"format": "temporalValues", "options": "aggregatedValues",
                                                       "aggrMethods": "sum"})
    assert r.json()["speed"] == {"type": "Property", "values": [[1, at(1)]]}


def test_timeproperty_without_timerel_keeps_instances_that_have_it(client: httpx.Client) -> None:
    """Clause 4.11: instances without the time property do not match; timeproperty=deletedAt lists deletions."""
    eid = new_id("Bus")
    body = {"id": eid, "type": "Bus", "speed": prop(1, 1), "name": {"type": "Property", "value": "a"}}
    assert client.post("/entities", json=body).status_code == 201
    assert client.delete(f"/entities/{eid}/attrs/name").status_code == 204
    got = client.get(f"/temporal/entities/{eid}", params={"timeproperty": "deletedAt"}).json()
    assert set(got) == {"id", "type", "name"}
    assert got["name"][0]["value"] == "urn:ngsi-ld:null" and "deletedAt" in got["name"][0]


def test_aggregation_periods_start_at_the_first_instance(client: httpx.Client) -> None:
    """Without a start bound the periods count from the first instance; computed bounds carry no zero fraction."""
    eid = make(client, speed=[{"type": "Property", "value": v, "observedAt": f"2026-02-01T12:{m:02d}:00Z"}
                              for v, m in ((10, 3), (20, 40))] + [prop(30, 14)])
    r = client.get(f"/temporal/entities/{eid}", params={"format": "aggregatedValues", "aggrMethods": "sum",
                                                       "aggrPeriodDuration": "PT1H"})
    assert r.json()["speed"]["sum"] == [[30.0, "2026-02-01T12:03:00Z", "2026-02-01T13:03:00Z"],
                                        [30.0, "2026-02-01T13:03:00Z", "2026-02-01T14:03:00Z"]]


@pytest.mark.parametrize("method,path", [("GET", "/temporal/entities?type=Bus"), ("POST", "/temporal/entities"),
                                         ("GET", "/temporal/entities/urn:ngsi-ld:Bus:1"),
                                         ("POST", "/temporal/entityOperations/query"),
                                         ("DELETE", "/temporal/entities/urn:ngsi-ld:Bus:1/attrs/speed")])
def test_unknown_parameters_are_invalid_requests(client: httpx.Client, method: str, path: str) -> None:
    """Clause 6.3.20: a parameter the operation does not take is InvalidRequest, before the body is read."""
    sep = "&" if "?" in path else "?"
    r = client.request(method, f"{path}{sep}timrel=after", content=b'"not even an entity"',
                       headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 400 and r.json()["type"] == INVALID, r.text


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_storage_narrows_entities_by_ids_and_types(kind: str, tmp_path: Path) -> None:
    """HistoryStorage.entities(ids=, types_any=) on both stores: the candidates a selection starts from."""

    async def body() -> None:
        schema = None
        if kind == "sqlite":
            history: HistoryStorage = SQLiteHistory(tmp_path / "h.db")
        else:
            schema = schema_name("test_sel")
            dsn = services.require_postgres()
            await acreate_schema(schema, dsn)
            history = PostgresHistory(dsn, schema)
        await history.open()
        try:
            await history.write([EntityRow("t", f"urn:x:{i}", [f"urn:T{i % 3}", "urn:All"]) for i in range(9)], [])
            assert [r.entity_id for r in await history.entities("t", types_any=["urn:T1"])] == ["urn:x:1", "urn:x:4", "urn:x:7"]
            got = await history.entities("t", ids=["urn:x:1", "urn:x:2", "urn:x:9"], types_any=["urn:T2", "urn:T0"])
            assert [r.entity_id for r in got] == ["urn:x:2"]
            assert len(await history.entities("t")) == 9 and await history.entities("other") == []
        finally:
            await history.close()
            if schema is not None:
                await adrop_schema(schema)

    asyncio.run(body())
