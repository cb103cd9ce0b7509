"""The QuantumLeap-compatible /v2 history API on the real broker (sqlite and postgres), over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.broker.conftest import API, new_id

SDM = "https://smartdatamodels.org/context.jsonld"
T = ["2026-01-01T10:00:00.000Z", "2026-01-01T10:30:00.000Z", "2026-01-01T11:15:00.000Z", "2026-01-02T09:00:00.000Z"]


def ql_time(text: str) -> str:
    return text.replace("Z", "+00:00")


@pytest.fixture
def ql(broker_url: str, tenant: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant, "Fiware-ServicePath": "/"}, timeout=30) as c:
        yield c


def v2_room(eid: str, temperature: Any, pressure: Any, at: str, etype: str = "Room") -> dict[str, Any]:
    meta = {"TimeInstant": {"type": "DateTime", "value": at}}
    return {"id": eid, "type": etype,
            "temperature": {"type": "Number", "value": temperature, "metadata": meta},
            "pressure": {"type": "Integer", "value": pressure, "metadata": meta}}


def notify_v2(ql: httpx.Client, *entities: dict[str, Any]) -> None:
    r = ql.post("/notify", json={"subscriptionId": "5947d174793fe6f7eb5e3961", "data": list(entities)})
    assert r.status_code == 200, r.text
    assert r.text == "Notification successfully processed"


def seed_rooms(ql: httpx.Client) -> None:
    for i, at in enumerate(T):
        notify_v2(ql, v2_room("Room1", 20.0 + i, 700 + i, at), v2_room("Room2", 30.0 + i, 800 + i, at))


def test_notify_v2_then_one_entity_one_attribute(ql: httpx.Client) -> None:
    seed_rooms(ql)
    r = ql.get("/entities/Room1/attrs/temperature")
    assert r.status_code == 200, r.text
    assert r.json() == {"entityId": "Room1", "entityType": "Room", "attrName": "temperature",
                        "index": [ql_time(t) for t in T], "values": [20.0, 21.0, 22.0, 23.0]}
    value = ql.get("/entities/Room1/attrs/temperature/value").json()
    assert value == {"index": [ql_time(t) for t in T], "values": [20.0, 21.0, 22.0, 23.0]}


def test_notify_is_idempotent(ql: httpx.Client) -> None:
    seed_rooms(ql)
    seed_rooms(ql)
    assert ql.get("/entities/Room1/attrs/pressure").json()["values"] == [700, 701, 702, 703]


def test_one_entity_all_attributes_and_paging(ql: httpx.Client) -> None:
    seed_rooms(ql)
    body = ql.get("/entities/Room2").json()
    assert body == {"entityId": "Room2", "entityType": "Room", "index": [ql_time(t) for t in T],
                    "attributes": [{"attrName": "pressure", "values": [800, 801, 802, 803]},
                                   {"attrName": "temperature", "values": [30.0, 31.0, 32.0, 33.0]}]}
    assert ql.get("/entities/Room2", params={"attrs": "temperature"}).json()["attributes"] == [
        {"attrName": "temperature", "values": [30.0, 31.0, 32.0, 33.0]}]
    assert ql.get("/entities/Room2/value", params={"attrs": "pressure", "lastN": 2}).json() == {
        "index": [ql_time(T[2]), ql_time(T[3])], "attributes": [{"attrName": "pressure", "values": [802, 803]}]}
    page = ql.get("/entities/Room2/attrs/pressure", params={"limit": 2, "offset": 1}).json()
    assert page["values"] == [801, 802]
    window = ql.get("/entities/Room2/attrs/pressure", params={"fromDate": T[1], "toDate": T[2]}).json()
    assert window["values"] == [801, 802] and window["index"] == [ql_time(T[1]), ql_time(T[2])]
    assert ql.get("/entities/Room2/attrs/pressure", params={"type": "Room"}).status_code == 200
    assert ql.get("/entities/Room2/attrs/pressure", params={"type": "Car"}).status_code == 404


def test_types_endpoints(ql: httpx.Client) -> None:
    seed_rooms(ql)
    notify_v2(ql, v2_room("Car1", 5.0, 1, T[0], etype="Car"))
    # lastN, limit and offset count rows over all the entities together, as QuantumLeap's SQL does
    assert len(ql.get("/types/Room/attrs/temperature", params={"lastN": 1}).json()["entities"]) == 1
    body = ql.get("/types/Room/attrs/temperature", params={"lastN": 2}).json()
    assert body == {"entityType": "Room", "attrName": "temperature", "entities": [
        {"entityId": "Room1", "index": [ql_time(T[3])], "values": [23.0]},
        {"entityId": "Room2", "index": [ql_time(T[3])], "values": [33.0]}]}
    ordered = ql.get("/types/Room/attrs/temperature", params={"id": "Room2,Room1", "limit": 2}).json()
    assert [e["entityId"] for e in ordered["entities"]] == ["Room2", "Room1"]
    assert ql.get("/types/Room/attrs/temperature/value", params={"id": "Room1"}).json() == {
        "values": [{"entityId": "Room1", "index": [ql_time(t) for t in T], "values": [20.0, 21.0, 22.0, 23.0]}]}
    full = ql.get("/types/Room", params={"attrs": "pressure", "fromDate": T[3]}).json()
    assert full == {"entityType": "Room", "entities": [
        {"entityId": "Room1", "index": [ql_time(T[3])], "attributes": [{"attrName": "pressure", "values": [703]}]},
        {"entityId": "Room2", "index": [ql_time(T[3])], "attributes": [{"attrName": "pressure", "values": [803]}]}]}
    assert ql.get("/types/Room/value", params={"attrs": "pressure", "fromDate": T[3]}).json() == {"values": full["entities"]}
    assert ql.get("/types/Bus").status_code == 404
    listing = ql.get("/entities", params={"type": "Room"}).json()
    assert listing == [{"entityId": "Room1", "entityType": "Room", "index": ql_time(T[3])},
                       {"entityId": "Room2", "entityType": "Room", "index": ql_time(T[3])}]
    assert ql.get("/entities", params={"toDate": T[0], "limit": 1, "offset": 1}).json() == [
        {"entityId": "Room1", "entityType": "Room", "index": ql_time(T[0])}]
    assert ql.get("/entities", params={"idPattern": "^Car"}).json()[0]["entityId"] == "Car1"


def test_attrs_endpoint_groups_by_type(ql: httpx.Client) -> None:
    seed_rooms(ql)
    notify_v2(ql, v2_room("Car1", 5.0, 1, T[0], etype="Car"))
    body = ql.get("/attrs/temperature", params={"fromDate": T[0], "toDate": T[0]}).json()
    assert body == {"attrName": "temperature", "types": [
        {"entityType": "Car", "entities": [{"entityId": "Car1", "index": [ql_time(T[0])], "values": [5.0]}]},
        {"entityType": "Room", "entities": [
            {"entityId": "Room1", "index": [ql_time(T[0])], "values": [20.0]},
            {"entityId": "Room2", "index": [ql_time(T[0])], "values": [30.0]}]}]}
    assert ql.get("/attrs/temperature/value", params={"fromDate": T[0], "toDate": T[0]}).json() == {"values": body["types"]}
    assert ql.get("/attrs/temperature", params={"type": "Car"}).json()["types"][0]["entityType"] == "Car"


def test_aggregation(ql: httpx.Client) -> None:
    seed_rooms(ql)
    expected = {"count": 4, "sum": 86.0, "avg": 21.5, "min": 20.0, "max": 23.0}
    for method, value in expected.items():
        r = ql.get("/entities/Room1/attrs/temperature", params={"aggrMethod": method})
        assert r.status_code == 200, r.text
        assert r.json()["index"] == [] and r.json()["values"] == [value], method
    hourly = ql.get("/entities/Room1/attrs/temperature", params={"aggrMethod": "avg", "aggrPeriod": "hour"}).json()
    assert hourly["index"] == ["2026-01-01T10:00:00.000+00:00", "2026-01-01T11:00:00.000+00:00", "2026-01-02T09:00:00.000+00:00"]
    assert hourly["values"] == [20.5, 22.0, 23.0]
    daily = ql.get("/types/Room/attrs/pressure", params={"aggrMethod": "max", "aggrPeriod": "day"}).json()
    assert daily["entities"] == [
        {"entityId": "Room1", "index": ["2026-01-01T00:00:00.000+00:00", "2026-01-02T00:00:00.000+00:00"], "values": [702, 703]},
        {"entityId": "Room2", "index": ["2026-01-01T00:00:00.000+00:00", "2026-01-02T00:00:00.000+00:00"], "values": [802, 803]}]
    ranged = ql.get("/types/Room/attrs/pressure", params={"aggrMethod": "sum", "id": "Room1", "fromDate": T[0], "toDate": T[1]}).json()
    assert ranged["entities"] == [{"entityId": "Room1", "index": [T[0], T[1]], "values": [1401]}]
    attrs = ql.get("/entities/Room1", params={"aggrMethod": "min", "attrs": "temperature,pressure"}).json()
    assert attrs["index"] == [] and attrs["attributes"] == [{"attrName": "pressure", "values": [700]},  # by name, as QL
                                                            {"attrName": "temperature", "values": [20.0]}]
    # aggrScope=global: QuantumLeap answers 501; here one series across the entities of the type
    glob = ql.get("/types/Room/attrs/temperature", params={"aggrMethod": "max", "aggrScope": "global"}).json()
    assert glob == {"entityType": "Room", "attrName": "temperature", "index": [ql_time(T[0]), ql_time(T[3])], "values": [33.0]}
    monthly = ql.get("/types/Room", params={"aggrMethod": "count", "aggrPeriod": "month", "aggrScope": "global", "attrs": "pressure"})
    assert monthly.json() == {"entityType": "Room", "index": ["2026-01-01T00:00:00.000+00:00"],
                              "attributes": [{"attrName": "pressure", "values": [8]}]}


def test_values_that_are_not_numbers_through_the_python_path(ql: httpx.Client) -> None:
    # text, booleans, structured values and date-times: the rollups cannot serve them, the values are read
    # from the stored rows (series.load_rows); the answers are QuantumLeap's (and this broker's before)
    for i, at in enumerate(T):
        meta = {"TimeInstant": {"type": "DateTime", "value": at}}
        notify_v2(ql, {"id": "Dev1", "type": "Device",
                       "name": {"type": "Text", "value": "bdac"[i], "metadata": meta},
                       "on": {"type": "Boolean", "value": i % 2 == 0, "metadata": meta},
                       "shape": {"type": "StructuredValue", "value": {"k": i, "l": [i, "x"]}, "metadata": meta},
                       "when": {"type": "DateTime", "value": f"2026-02-0{4 - i}T00:00:00.000Z", "metadata": meta}})
    raw = ql.get("/entities/Dev1").json()
    assert raw["index"] == [ql_time(t) for t in T]
    assert {a["attrName"]: a["values"] for a in raw["attributes"]} == {
        "name": ["b", "d", "a", "c"], "on": [True, False, True, False],
        "shape": [{"k": i, "l": [i, "x"]} for i in range(4)],
        "when": [f"2026-02-0{4 - i}T00:00:00.000+00:00" for i in range(4)]}

    def aggr(attr: str, method: str, **more: str) -> Any:
        r = ql.get(f"/entities/Dev1/attrs/{attr}", params={"aggrMethod": method, **more})
        return r.json()["values"] if r.status_code == 200 else r.status_code

    assert [aggr("name", m) for m in ("count", "min", "max", "avg", "sum")] == [[4], ["a"], ["d"], 404, 404]
    assert [aggr("when", m) for m in ("min", "max")] == [["2026-02-01T00:00:00.000+00:00"], ["2026-02-04T00:00:00.000+00:00"]]
    assert [aggr("on", m) for m in ("count", "max", "avg")] == [[4], 404, 404]
    assert [aggr("shape", m) for m in ("count", "min", "sum")] == [[4], 404, 404]
    assert aggr("name", "max", aggrPeriod="hour") == ["b", "d", "a", "c"][:2][::-1][:1] + ["a", "c"]
    assert aggr("on", "count", aggrPeriod="day") == [3, 1]


def test_errors(ql: httpx.Client) -> None:
    seed_rooms(ql)
    notify_v2(ql, {"id": "Room1", "type": "Room", "name": {"type": "Text", "value": "kitchen",
                                                          "metadata": {"TimeInstant": {"type": "DateTime", "value": T[0]}}}})
    missing = ql.get("/entities/Nowhere/attrs/temperature")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found", "description": "No records were found for such query."}
    assert ql.get("/entities/Room1/attrs/humidity").status_code == 404
    assert ql.get("/entities/Room1/attrs/temperature", params={"fromDate": "2027-01-01T00:00:00Z"}).status_code == 404
    assert ql.get("/entities/Room1/attrs/temperature", params={"aggrPeriod": "hour"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"aggrMethod": "median"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"aggrMethod": "sum", "aggrPeriod": "week"}).status_code == 400
    assert ql.get("/entities/Room1", params={"aggrMethod": "sum"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/name", params={"aggrMethod": "avg"}).status_code == 404
    assert ql.get("/entities/Room1/attrs/name", params={"aggrMethod": "count"}).json()["values"] == [1]
    assert ql.get("/entities/Room1/attrs/temperature", params={"lastN": "abc"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"lastN": "0"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"fromDate": "yesterday"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"options": "whatever"}).status_code == 400
    assert ql.get("/entities/Room1/attrs/temperature", params={"options": "keyValues"}).status_code == 200
    assert ql.get("/types/Room/attrs/temperature", params={"aggrMethod": "sum", "aggrScope": "planet"}).status_code == 400
    assert ql.get("/entities/Room1", headers={"Fiware-ServicePath": "no-slash"}).status_code == 400
    assert ql.post("/notify", json={"subscriptionId": "x"}).status_code == 400
    assert ql.post("/notify", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert ql.post("/notify", json={"data": [{"id": "Room9"}]}).status_code == 400
    # QuantumLeap answers 500 to a malformed geo:point; a client error is a 400
    for point in ("41.3, ", "abc", "91.0, 2.0", "1, 2, 3"):
        bad = {"id": "Spot1", "type": "Spot", "location": {"type": "geo:point", "value": point}}
        r = ql.post("/notify", json={"subscriptionId": "x", "data": [bad]})
        assert r.status_code == 400, point
        assert set(r.json()) == {"error", "description"}


def test_tenants_are_fiware_services(ql: httpx.Client, broker_url: str) -> None:
    seed_rooms(ql)
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": "someoneelse"}) as other:
        assert other.get("/entities/Room1/attrs/temperature").status_code == 404


def test_geo_queries(ql: httpx.Client) -> None:
    for eid, point in (("Spot1", "41.3851, 2.1734"), ("Spot2", "48.8566, 2.3522")):
        notify_v2(ql, {"id": eid, "type": "Spot", "location": {"type": "geo:point", "value": point},
                       "occupancy": {"type": "Number", "value": 3,
                                     "metadata": {"TimeInstant": {"type": "DateTime", "value": T[0]}}}})
    near = ql.get("/types/Spot/attrs/occupancy", params={"georel": "near;maxDistance:5000", "geometry": "point",
                                                         "coords": "41.39,2.17"}).json()
    assert [e["entityId"] for e in near["entities"]] == ["Spot1"]
    box = ql.get("/types/Spot/attrs/occupancy", params={"georel": "coveredBy", "geometry": "box",
                                                        "coords": "48.0,2.0;49.0,3.0"}).json()
    assert [e["entityId"] for e in box["entities"]] == ["Spot2"]
    location = ql.get("/entities/Spot1/attrs/location").json()
    assert location["values"] == [{"type": "Point", "coordinates": [2.1734, 41.3851]}]
    for params in ({"georel": "near", "geometry": "point", "coords": "41,2"},
                   {"georel": "near;maxDistance:10", "geometry": "point"},
                   {"georel": "coveredBy", "geometry": "circle", "coords": "41,2"},
                   {"georel": "coveredBy", "geometry": "point", "coords": "x,y"}):
        r = ql.get("/types/Spot/attrs/occupancy", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"] == "ValueError"


def test_notify_ngsi_ld_and_broker_writes_share_history(ql: httpx.Client, client: httpx.Client) -> None:
    eid = new_id("AirQualityObserved")
    notification = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "subscriptionId": "urn:ngsi-ld:Subscription:1",
                    "notifiedAt": T[3], "@context": SDM,
                    "data": [{"id": eid, "type": "AirQualityObserved",
                              "no2": {"type": "Property", "value": 41.5, "unitCode": "GQ", "observedAt": T[0]}}]}
    for _ in range(2):  # delivered twice, stored once
        r = ql.post("/notify", json=notification)
        assert r.status_code == 200, r.text
    # the NGSI-LD broker's own writes reach /v2 through the history recorder
    link = {"Link": f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
    r = client.post("/temporal/entities", json={"id": eid, "type": "AirQualityObserved", "no2": [
        {"type": "Property", "value": 43.0, "observedAt": T[1]}]}, headers=link)
    assert r.status_code in (201, 204), r.text
    other = new_id("AirQualityObserved")
    r = client.post("/entities", json={"id": other, "type": "AirQualityObserved",
                                        "no2": {"type": "Property", "value": 12.0, "observedAt": T[2]}}, headers=link)
    assert r.status_code == 201, r.text
    body = ql.get(f"/entities/{eid}/attrs/no2").json()
    assert body == {"entityId": eid, "entityType": "AirQualityObserved", "attrName": "no2",
                    "index": [ql_time(T[0]), ql_time(T[1])], "values": [41.5, 43.0]}
    assert ql.get(f"/entities/{other}/attrs/no2").json()["values"] == [12.0]
    full_iri = "https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/no2"
    assert ql.get(f"/entities/{eid}/attrs/{quote(full_iri, safe='')}").json()["values"] == [41.5, 43.0]
    assert ql.get(f"/entities/{eid}/attrs/{quote(full_iri, safe='')}/value").json()["values"] == [41.5, 43.0]
    ld = client.get(f"/temporal/entities/{eid}", params={"options": "temporalValues"}, headers=link).json()
    slot = ld["no2"][0] if isinstance(ld["no2"], list) else ld["no2"]
    assert [v[0] for v in slot["values"]] == [41.5, 43.0]


def test_ld_api_does_not_see_v2_prefix(client: httpx.Client, ql: httpx.Client) -> None:
    notify_v2(ql, v2_room("Room7", 1.0, 2, T[0]))
    r = client.get("/temporal/entities/urn:ngsi-v2:Room:Room7", params={"options": "temporalValues", "attrs": "temperature"},
                   headers={"Link": f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'})
    assert r.status_code == 200, r.text
    slot = r.json()["temperature"]
    slot = slot[0] if isinstance(slot, list) else slot
    assert slot["values"] == [[1.0, T[0]]]
    assert API == "/ngsi-ld/v1"


def test_history_port_shares_the_broker_state(tmp_path: Any) -> None:
    """`metropole run`'s second server (port 8668 in production) reads and writes the broker's own history."""
    import threading
    import time

    from broker.settings import BrokerSettings
    from metropole.cli import _history_server, _listen
    from tests.broker.conftest import RunningBroker, free_port
    from web.ports import StartupError

    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'b.db'}")
    with RunningBroker(settings) as broker:
        port = free_port()
        server = _history_server("127.0.0.1", port, broker.server.config.app)
        assert server is not None
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            with pytest.raises(StartupError, match="history API cannot start"):  # port taken: the start fails
                _listen("127.0.0.1", [(port, "QuantumLeap-compatible history API", "--history-port")])  # (issue 17)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Fiware-Service": "city"}) as ql:
                assert ql.get("/version").json() == {"version": "1.0.0"}
                assert ql.get("/health").status_code == 200
                assert ql.get("/ngsi-ld/v1/types").status_code == 404  # only the QuantumLeap API on this port
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/v2", headers={"Fiware-Service": "city"}) as ql:
                notify_v2(ql, v2_room("Room1", 19.5, 1000, T[0]))
                assert ql.get("/entities/Room1/attrs/temperature").json()["values"] == [19.5]
            r = httpx.get(f"{broker.url}{API}/temporal/entities/urn:ngsi-v2:Room:Room1",
                          params={"options": "temporalValues", "attrs": "temperature"},
                          headers={"NGSILD-Tenant": "city", "Link": f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"'})
            assert r.status_code == 200, r.text
        finally:
            server.should_exit = True
            thread.join(timeout=20)


def test_a_notification_stores_what_its_entities_one_by_one_store(broker_url: str) -> None:
    """One history transaction per notification (write_many) leaves the rows that one write per entity leaves:
    an entity given twice has its later instances replace the earlier ones, and types add up."""
    body = [v2_room("Room1", 20.0, 700, T[0]), v2_room("Room2", 30.0, 800, T[0]), v2_room("Room1", 21.0, 701, T[1]),
            v2_room("Room1", 25.5, 705, T[0]), v2_room("Room2", 31.0, 801, T[1], etype="Office")]
    answers = []
    for together in (True, False):
        tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
            if together:
                notify_v2(c, *body)
            else:
                for e in body:
                    notify_v2(c, e)
            answers.append([c.get(path).json() for path in (
                "/entities/Room1", "/entities/Room2?type=Room", "/entities/Room2?type=Office", "/types/Room", "/types/Office",
                "/entities/Room1/attrs/temperature?aggrMethod=avg&aggrPeriod=hour")])
    assert answers[0] == answers[1]
    assert answers[0][0]["attributes"][1]["values"] == [25.5, 21.0]  # the later instance at T[0] won
