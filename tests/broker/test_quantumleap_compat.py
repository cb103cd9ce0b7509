"""QuantumLeap 1.0.0's answers, endpoint family by endpoint family, on both stores over a real socket.

Each test names the file of QuantumLeap's server code (orchestracities/
ngsi-timeseries-api at tag 1.0.0, commit f8fd27b) whose behaviour it checks.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import orjson
import pytest
import uvicorn

from tests.broker.conftest import RunningBroker, free_port, new_id
from tests.broker.test_quantumleap_api import T, notify_v2, ql_time, seed_rooms, v2_room


@pytest.fixture
def ql(broker_url: str, tenant: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
        yield c


def at_path(ql: httpx.Client, path: str) -> dict[str, str]:
    return {"Fiware-Service": ql.headers["Fiware-Service"], "Fiware-ServicePath": path}


def wait_for(check: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_service_paths_partition_history(ql: httpx.Client) -> None:
    """sql_translator.py:202-247 (insert: one path, or one per entity) and :810-824 (queries: '/' all, a path and below, ~*)."""
    r = ql.post("/notify", json={"data": [v2_room("Sol", 1.0, 1, T[0])]}, headers=at_path(ql, "/madrid/centro"))
    assert r.status_code == 200, r.text
    ql.post("/notify", json={"data": [v2_room("Rambla", 2.0, 2, T[0])]}, headers=at_path(ql, "/barcelona"))
    ql.post("/notify", json={"data": [v2_room("Retiro", 3.0, 3, T[0]), v2_room("Gracia", 4.0, 4, T[0])]},
            headers=at_path(ql, "/madrid/retiro, /barcelona/gracia"))

    def ids(path: str | None) -> list[str]:
        headers = at_path(ql, path) if path else {"Fiware-Service": ql.headers["Fiware-Service"]}
        r = ql.get("/entities", headers=headers)
        return sorted(e["entityId"] for e in r.json()) if r.status_code == 200 else []

    assert ids(None) == ids("/") == ["Gracia", "Rambla", "Retiro", "Sol"]
    assert ids("/madrid") == ["Retiro", "Sol"]
    assert ids("/MADRID/centro") == ["Sol"]  # ~*: case-insensitive
    assert ids("/barcelona") == ["Gracia", "Rambla"]
    assert ids("/madrid/centro,/barcelona/gracia") == ["Gracia", "Sol"]
    assert ids("/mad") == []  # a path, not a string prefix
    assert ql.get("/entities/Sol/attrs/temperature", headers=at_path(ql, "/barcelona")).status_code == 404
    assert ql.get("/entities/Sol/attrs/temperature", headers=at_path(ql, "/madrid")).json()["values"] == [1.0]
    assert [e["entityId"] for e in ql.get("/types/Room/attrs/pressure", headers=at_path(ql, "/barcelona")).json()["entities"]] \
        == ["Gracia", "Rambla"]
    mismatch = ql.post("/notify", json={"data": [v2_room("X", 1.0, 1, T[0])]}, headers=at_path(ql, "/a,/b"))
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "InvalidHeaderValue"
    # deletes see only their path (delete.py:7-63)
    assert ql.delete("/entities/Sol", headers=at_path(ql, "/barcelona")).status_code == 404
    assert ql.delete("/types/Room", headers=at_path(ql, "/barcelona")).status_code == 204
    assert ids("/") == ["Retiro", "Sol"]
    drop = ql.delete("/types/Room", params={"dropTable": "true"}, headers=at_path(ql, "/madrid"))
    assert drop.status_code == 422


def test_ngsi_ld_writes_read_through_v2(ql: httpx.Client, client: httpx.Client) -> None:
    """query_1T1E1A.py, query_1TNE1A.py: names as the notification carries them; an entity written without Link is `no2`."""
    eid = new_id("AirQualityObserved")
    r = client.post("/entities", json={"id": eid, "type": "AirQualityObserved",
                                       "no2": {"type": "Property", "value": 21.0, "observedAt": T[0]},
                                       "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": T[1]},
                                                        "observedAt": T[0]}})
    assert r.status_code == 201, r.text
    body = ql.get(f"/entities/{eid}/attrs/no2").json()
    assert body == {"entityId": eid, "entityType": "AirQualityObserved", "attrName": "no2",
                    "index": [ql_time(T[0])], "values": [21.0]}
    assert ql.get(f"/entities/{eid}/attrs/NO2").json()["values"] == [21.0]  # column names are lowercased in QuantumLeap
    whole = ql.get(f"/entities/{eid}").json()
    assert [a["attrName"] for a in whole["attributes"]] == ["dateObserved", "no2"]
    # a DateTime comes back as QuantumLeap's ISO text, not as a JSON-LD value object (timescale.py:231-241)
    assert whole["attributes"][0]["values"] == [ql_time(T[1])]
    assert ql.get("/types/AirQualityObserved/attrs/no2").json()["entities"][0]["entityId"] == eid
    assert ql.get("/types/airqualityobserved/attrs/no2").status_code == 200  # table names are lowercased
    # an NGSI-LD notification without @context carries the same short names
    other = new_id("AirQualityObserved")
    note = {"id": "urn:ngsi-ld:Notification:x", "type": "Notification", "notifiedAt": T[2],
            "data": [{"id": other, "type": "AirQualityObserved", "no2": {"type": "Property", "value": 5, "observedAt": T[2]}}]}
    assert ql.post("/notify", json=note).status_code == 200
    assert ql.get(f"/entities/{other}/attrs/no2").json()["values"] == [5]
    listing = {e["entityId"]: e["entityType"] for e in ql.get("/entities", params={"type": "AirQualityObserved"}).json()}
    assert listing == {eid: "AirQualityObserved", other: "AirQualityObserved"}


def test_attrs_endpoints(ql: httpx.Client) -> None:
    """query_NTNENA.py (/attrs: names sorted, each grouped by type) and query_NTNE1A.py; limit/lastN per type (sql_translator.py:1098)."""
    seed_rooms(ql)
    notify_v2(ql, v2_room("Car1", 5.0, 1, T[0], etype="Car"))
    body = ql.get("/attrs", params={"fromDate": T[0], "toDate": T[0]}).json()
    assert [a["attrName"] for a in body["attrs"]] == ["pressure", "temperature"]
    assert body["attrs"][1] == {"attrName": "temperature", "types": [
        {"entityType": "Car", "entities": [{"entityId": "Car1", "index": [ql_time(T[0])], "values": [5.0]}]},
        {"entityType": "Room", "entities": [{"entityId": "Room1", "index": [ql_time(T[0])], "values": [20.0]},
                                            {"entityId": "Room2", "index": [ql_time(T[0])], "values": [30.0]}]}]}
    assert ql.get("/attrs/value", params={"fromDate": T[0], "toDate": T[0]}).json() == {"values": body["attrs"]}
    assert [a["attrName"] for a in ql.get("/attrs", params={"attrs": "pressure"}).json()["attrs"]] == ["pressure"]
    last = ql.get("/attrs/temperature", params={"lastN": 1}).json()["types"]
    assert [(t["entityType"], [e["entityId"] for e in t["entities"]]) for t in last] == [("Car", ["Car1"]), ("Room", ["Room1"])] \
        or [(t["entityType"], len(t["entities"])) for t in last] == [("Car", 1), ("Room", 1)]
    assert ql.get("/attrs", params={"aggrMethod": "sum"}).status_code == 400
    assert ql.get("/attrs/humidity").status_code == 404


def test_aggregation_pages_buckets_and_text(ql: httpx.Client) -> None:
    """sql_translator.py:750-910: buckets ordered by entity then time, LIMIT/OFFSET/lastN on buckets; PostgreSQL's aggregates by type."""
    seed_rooms(ql)
    hourly = {"aggrMethod": "sum", "aggrPeriod": "hour"}
    full = ql.get("/types/Room/attrs/pressure", params=hourly).json()["entities"]
    assert [len(e["values"]) for e in full] == [3, 3]
    last = ql.get("/types/Room/attrs/pressure", params={**hourly, "lastN": 2}).json()["entities"]
    assert last == [{"entityId": "Room1", "index": ["2026-01-01T11:00:00.000+00:00", "2026-01-02T09:00:00.000+00:00"],
                     "values": [702, 703]}]
    page = ql.get("/types/Room/attrs/pressure", params={**hourly, "limit": 2, "offset": 2}).json()["entities"]
    assert page == [{"entityId": "Room1", "index": ["2026-01-02T09:00:00.000+00:00"], "values": [703]},
                    {"entityId": "Room2", "index": ["2026-01-01T10:00:00.000+00:00"], "values": [1601]}]
    one = ql.get("/entities/Room2/attrs/pressure", params={**hourly, "lastN": 1}).json()
    assert one["index"] == ["2026-01-02T09:00:00.000+00:00"] and one["values"] == [803]
    for i, word in enumerate(("beta", "alpha", "gamma")):
        notify_v2(ql, {"id": "Room1", "type": "Room", "label": {"type": "Text", "value": word},
                       "open": {"type": "Boolean", "value": i % 2 == 0},
                       "TimeInstant": {"type": "DateTime", "value": T[i]}})
    assert ql.get("/entities/Room1/attrs/label", params={"aggrMethod": "count"}).json()["values"] == [3]
    assert ql.get("/entities/Room1/attrs/label", params={"aggrMethod": "max"}).json()["values"] == ["gamma"]
    assert ql.get("/entities/Room1/attrs/label", params={"aggrMethod": "min"}).json()["values"] == ["alpha"]
    for method, attr in (("avg", "label"), ("sum", "label"), ("max", "open")):
        r = ql.get("/entities/Room1/attrs/" + attr, params={"aggrMethod": method})
        assert r.status_code == 404, (method, attr)
        assert r.json() == {"error": "AggrMethod cannot be applied",
                            "description": "AggrMethod cannot be applied on type TEXT and BOOLEAN."}
    # a v2 DateTime attribute comes back as QuantumLeap's ISO text
    assert ql.get("/entities/Room1/attrs/TimeInstant").json()["values"] == [ql_time(t) for t in T[:3]]
    glob = ql.get("/types/Room/attrs/temperature", params={"aggrMethod": "avg", "aggrScope": "global"}).json()
    assert "" not in glob["index"] and glob["index"] == [ql_time(T[0]), ql_time(T[3])]


def test_meta_deletes_and_bad_input(ql: httpx.Client) -> None:
    """api.py (GET /v2), delete.py (fromDate/toDate/dropTable), connexion's body checks (415/400) before reporter.py:150."""
    r = ql.get("")
    assert r.status_code == 200 and r.json() == {"notify_url": "/v2/notify", "subscriptions_url": "/v2/subscriptions",
                                                 "entities_url": "/v2/entities", "types_url": "/v2/types",
                                                 "attributes_url": "/v2/attrs"}
    assert ql.get("/").json() == r.json()
    seed_rooms(ql)
    assert ql.delete("/entities/Room1", params={"fromDate": T[1], "toDate": T[2]}).status_code == 204
    assert ql.get("/entities/Room1/attrs/temperature").json()["values"] == [20.0, 23.0]
    assert ql.delete("/entities/Room1", params={"fromDate": "2030-01-01T00:00:00Z"}).status_code == 404
    assert ql.delete("/entities/Room1").status_code == 204
    assert ql.get("/entities/Room1/attrs/temperature").status_code == 404
    assert ql.delete("/entities/Room1").status_code == 404
    assert ql.delete("/types/Room", params={"toDate": T[0]}).status_code == 204
    assert ql.get("/entities/Room2/attrs/temperature").json()["values"] == [31.0, 32.0, 33.0]
    assert ql.delete("/types/Room", params={"dropTable": "true"}).status_code == 204
    assert ql.get("/types/Room").status_code == 404
    assert ql.delete("/types/Room", params={"dropTable": "true"}).status_code == 204
    text = ql.post("/notify", content=b"id=Room1", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"] == "Unsupported Media Type"
    assert ql.post("/notify", content=b"{oops", headers={"Content-Type": "application/json"}).status_code == 400
    assert ql.post("/notify", json={"data": [{"id": "Room9"}]}).status_code == 400
    ld = ql.post("/notify", content=orjson.dumps({"data": [v2_room("Room5", 1.0, 1, T[0])]}),
                 headers={"Content-Type": "application/ld+json"})
    assert ld.status_code == 200  # any application/*+json is JSON to connexion


def test_tenants(ql: httpx.Client, broker_url: str, tenant: str) -> None:
    """sql_translator.py:174-185 (schema "mt" + service.lower()); httputil.py:4-15 (NGSILD-Tenant before Fiware-Service on writes)."""
    with httpx.Client(base_url=broker_url + "/v2", timeout=30) as c:
        r = c.post("/notify", json={"data": [v2_room("Room1", 1.0, 1, T[0])]},
                   headers={"Fiware-Service": "ignored", "NGSILD-Tenant": tenant.upper()})
        assert r.status_code == 200
        assert c.get("/entities/Room1/attrs/temperature", headers={"Fiware-Service": tenant.upper()}).json()["values"] == [1.0]
        empty = c.get("/entities", headers={"Fiware-Service": f"nobody{uuid.uuid4().hex[:8]}"})
        assert empty.status_code == 404 and empty.json()["error"] == "Not Found"
        assert c.get("/entities/Room1/attrs/temperature", headers={"Fiware-Service": "ignored"}).status_code == 404


def test_subscribe_feeds_history_from_the_embedded_broker(ql: httpx.Client, client: httpx.Client, broker_url: str) -> None:
    """reporter.py `subscribe` of QuantumLeap 0.8 (removed in 1.0.0 by PR #493): the subscription feeding /v2/notify."""
    r = ql.post("/subscribe", params={"entityType": "AirQualityObserved", "attributes": "no2",
                                      "quantumleapUrl": broker_url + "/v2"})
    assert r.status_code == 201, r.text
    sub = client.get(r.headers["Location"].removeprefix("/ngsi-ld/v1"))
    assert sub.status_code == 200, sub.text
    assert sub.json()["notification"]["endpoint"]["uri"] == broker_url + "/v2/notify"
    eid = new_id("AirQualityObserved")
    link = {"Link": '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'}
    client.post("/entities", json={"id": eid, "type": "AirQualityObserved",
                                   "no2": {"type": "Property", "value": 33.0, "observedAt": T[0]}}, headers=link)
    wait_for(lambda: ql.get(f"/entities/{eid}/attrs/no2").status_code == 200, "the notification to reach /v2/notify")
    assert ql.get(f"/entities/{eid}/attrs/no2").json()["values"] == [33.0]
    assert ql.post("/subscribe", params={"idPattern": ".*"}).status_code == 400


class _FakeOrion(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], Any]]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), orjson.loads(body)))
        self.send_response(201)
        self.send_header("Location", "/v2/subscriptions/abc")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_subscribe_to_an_ngsi_v2_orion(ql: httpx.Client) -> None:
    """subscription_builder.py of QuantumLeap 0.8: the NGSI-v2 subscription posted to <orionUrl>/subscriptions."""
    handler = type("Orion", (_FakeOrion,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        orion = f"http://127.0.0.1:{server.server_address[1]}/v2"
        r = ql.post("/subscribe", params={"orionUrl": orion, "quantumleapUrl": "http://ql:8668/v2", "entityType": "Room",
                                          "observedAttributes": "temperature", "timeIndexAttribute": "seen"},
                    headers={"Fiware-ServicePath": "/madrid"})
        assert r.status_code == 201 and r.headers["Location"] == "/v2/subscriptions/abc"
        path, headers, body = handler.received[0]
        assert path == "/v2/subscriptions" and headers["Fiware-ServicePath"] == "/madrid"
        assert body["subject"] == {"entities": [{"type": "Room", "idPattern": ".*"}], "condition": {"attrs": ["temperature"]}}
        assert body["notification"]["httpCustom"] == {"url": "http://ql:8668/v2/notify",
                                                      "headers": {"Fiware-TimeIndex-Attribute": "seen"}}
        assert body["notification"]["metadata"] == ["dateCreated", "dateModified", "TimeInstant", "timestamp", "seen"]
        unreachable = ql.post("/subscribe", params={"orionUrl": f"http://127.0.0.1:{free_port()}/v2", "entityType": "Room"})
        assert unreachable.status_code == 400
    finally:
        server.shutdown()
        server.server_close()


def test_master_shapes(tmp_path: Any) -> None:
    """PR #754 (id/type) and PR #752 (200 [] for no records) of QuantumLeap's master branch, behind METROPOLE_HISTORY_SHAPES."""
    from broker.quantumleap import create_quantumleap_app
    from broker.quantumleap.settings import QuantumLeapSettings
    from broker.settings import BrokerSettings
    from broker.state import state_source

    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'b.db'}")
    with RunningBroker(settings) as broker:
        app = create_quantumleap_app(state_source(broker.server.config.app), settings=QuantumLeapSettings("master"))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, "the master-shaped server")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/v2", headers={"Fiware-Service": "m"}) as ql:
                notify_v2(ql, v2_room("Room1", 1.0, 2, T[0]))
                assert ql.get("/entities/Room1/attrs/temperature").json() == {
                    "id": "Room1", "type": "Room", "attrName": "temperature", "index": [ql_time(T[0])], "values": [1.0]}
                assert ql.get("/types/Room/attrs/pressure").json()["entities"][0]["id"] == "Room1"
                nothing = ql.get("/entities/Nope/attrs/temperature")
                assert nothing.status_code == 200 and nothing.json() == []
        finally:
            server.should_exit = True
            thread.join(timeout=20)
    with pytest.raises(ValueError):
        import os

        os.environ["METROPOLE_HISTORY_SHAPES"] = "2.0"
        try:
            QuantumLeapSettings.from_env()
        finally:
            del os.environ["METROPOLE_HISTORY_SHAPES"]
