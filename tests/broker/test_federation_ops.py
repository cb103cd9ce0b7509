"""Distributed temporal retrieve and query, discovery with details, contextSourceInfo, and the redirect
rule of registration (clauses 5.7.3, 5.7.4, 5.7.5-5.7.11, 4.3.6.5, 5.9.2.4) between real broker processes.

The same three `metropole broker` processes as tests/broker/test_federation.py (its fixtures): the
metropolitan broker M and the towns A and B; each test in a tenant of its own. A source that is down is a
closed port.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from bench.procs import free_port
from tests.broker.test_federation import Brokers, api, brokers, create, register, sensor, tenant

__all__ = ["api", "brokers", "tenant"]  # the fixtures, imported for pytest

EID = "urn:ngsi-ld:Sensor:hist"
HISTORY = {"observationInterval": {"startAt": "2026-01-01T00:00:00Z"}}


def history(client: httpx.Client, entity_id: str, **attrs: list[dict[str, Any]]) -> None:
    r = client.post("/temporal/entities", json={"id": entity_id, "type": "Sensor", **attrs})
    assert r.status_code in (201, 204), r.text


def prop(value: Any, at: str, dataset: str | None = None) -> dict[str, Any]:
    out = {"type": "Property", "value": value, "observedAt": at}
    return out | ({"datasetId": dataset} if dataset else {})


def instances(entity: dict[str, Any], attr: str) -> list[tuple[Any, str, str | None]]:
    return sorted((i["value"], i["observedAt"], i.get("datasetId")) for i in entity[attr])


def test_temporal_retrieve_merges_local_and_registered_history(brokers: Brokers, api: dict[str, httpx.Client],
                                                               tenant: str) -> None:
    history(api["M"], EID, no2=[prop(10, "2026-11-26T07:00:00Z")])
    history(api["A"], EID, no2=[prop(10, "2026-11-26T07:00:00Z"), prop(12, "2026-11-26T08:00:00Z"),
                                prop(30, "2026-11-26T07:30:00Z", "urn:ngsi-ld:Dataset:lab")],
            pm10=[prop(5, "2026-11-26T08:00:00Z")])
    history(api["A"], "urn:ngsi-ld:Sensor:only-a", no2=[prop(40, "2026-11-26T09:00:00Z")])
    register(api, "M", brokers.urls["A"], tenant, operations=["retrieveTemporal"], **HISTORY)
    got = api["M"].get(f"/temporal/entities/{EID}")
    assert got.status_code == 200, got.text
    entity = got.json()
    # the same instance (default datasetId, same observedAt) once; the lab's instance beside it
    assert instances(entity, "no2") == [(10, "2026-11-26T07:00:00Z", None), (12, "2026-11-26T08:00:00Z", None),
                                        (30, "2026-11-26T07:30:00Z", "urn:ngsi-ld:Dataset:lab")]
    assert instances(entity, "pm10") == [(5, "2026-11-26T08:00:00Z", None)]
    values = api["M"].get(f"/temporal/entities/{EID}", params={"options": "temporalValues", "attrs": "no2"}).json()
    slots = {s.get("datasetId"): s["values"] for s in values["no2"]}
    assert slots == {None: [[10, "2026-11-26T07:00:00Z"], [12, "2026-11-26T08:00:00Z"]],
                     "urn:ngsi-ld:Dataset:lab": [[30, "2026-11-26T07:30:00Z"]]}
    assert "pm10" not in values
    last = api["M"].get(f"/temporal/entities/{EID}", params={"lastN": "1", "attrs": "no2"}).json()
    assert instances(last, "no2") == [(12, "2026-11-26T08:00:00Z", None)]  # the last timestamp of all sources
    assert api["M"].get("/temporal/entities/urn:ngsi-ld:Sensor:only-a").status_code == 200
    local = api["M"].get(f"/temporal/entities/{EID}", params={"local": "true"}).json()
    assert instances(local, "no2") == [(10, "2026-11-26T07:00:00Z", None)]
    assert api["M"].get("/temporal/entities/urn:ngsi-ld:Sensor:only-a", params={"local": "true"}).status_code == 404
    assert api["M"].get("/temporal/entities/urn:ngsi-ld:Sensor:nowhere").status_code == 404


def test_temporal_post_query_asks_the_registered_sources(brokers: Brokers, api: dict[str, httpx.Client],
                                                         tenant: str) -> None:
    history(api["M"], "urn:ngsi-ld:Sensor:m", no2=[prop(1, "2026-11-26T07:00:00Z")])
    history(api["A"], "urn:ngsi-ld:Sensor:a", no2=[prop(2, "2026-11-26T07:00:00Z")], pm10=[prop(3, "2026-11-26T07:00:00Z")])
    history(api["A"], "urn:ngsi-ld:Sensor:m", no2=[prop(4, "2026-11-26T08:00:00Z")])
    # a registration for no2 only: the source is not asked for pm10 (clause 4.3.6.1)
    register(api, "M", brokers.urls["A"], tenant, operations=["queryTemporal"], **HISTORY,
             information=[{"entities": [{"type": "Sensor"}], "propertyNames": ["no2"]}])
    query = {"type": "Query", "entities": [{"type": "Sensor"}],
             "temporalQ": {"timerel": "after", "timeAt": "2026-11-01T00:00:00Z"}}
    got = api["M"].post("/temporal/entityOperations/query", json=query)
    assert got.status_code == 200, got.text
    by_id = {e["id"]: e for e in got.json()}
    assert set(by_id) == {"urn:ngsi-ld:Sensor:m", "urn:ngsi-ld:Sensor:a"}
    assert instances(by_id["urn:ngsi-ld:Sensor:m"], "no2") == [(1, "2026-11-26T07:00:00Z", None),
                                                              (4, "2026-11-26T08:00:00Z", None)]
    assert "pm10" not in by_id["urn:ngsi-ld:Sensor:a"]
    ordered = api["M"].post("/temporal/entityOperations/query", params={"orderBy": "id;desc"}, json=query).json()
    assert [e["id"] for e in ordered] == ["urn:ngsi-ld:Sensor:m", "urn:ngsi-ld:Sensor:a"]
    ordered = api["M"].post("/temporal/entityOperations/query", params={"orderBy": "id"}, json=query).json()
    assert [e["id"] for e in ordered] == ["urn:ngsi-ld:Sensor:a", "urn:ngsi-ld:Sensor:m"]
    local = api["M"].post("/temporal/entityOperations/query", json={**query, "local": True}).json()
    assert [e["id"] for e in local] == ["urn:ngsi-ld:Sensor:m"]
    # the query's interval does not overlap the registration's: not asked (5.10.2.4)
    before = api["M"].post("/temporal/entityOperations/query",
                           json={**query, "temporalQ": {"timerel": "before", "timeAt": "2025-06-01T00:00:00Z"}}).json()
    assert before == []


def test_temporal_reads_name_a_source_that_is_down(api: dict[str, httpx.Client], tenant: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    history(api["M"], EID, no2=[prop(10, "2026-11-26T07:00:00Z")])
    rid = register(api, "M", down, tenant, operations=["retrieveTemporal", "queryTemporal"], **HISTORY)
    got = api["M"].get(f"/temporal/entities/{EID}")
    assert got.status_code == 200 and instances(got.json(), "no2") == [(10, "2026-11-26T07:00:00Z", None)]
    assert down in got.headers["NGSILD-Warning"] and rid in got.headers["NGSILD-Warning"]
    queried = api["M"].post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Sensor"}],
        "temporalQ": {"timerel": "after", "timeAt": "2026-11-01T00:00:00Z"}})
    assert queried.status_code == 200 and [e["id"] for e in queried.json()] == [EID]
    assert down in queried.headers["NGSILD-Warning"] and rid in queried.headers["NGSILD-Warning"]


def test_a_redirect_registration_matching_an_entity_held_here_is_a_conflict(api: dict[str, httpx.Client],
                                                                           tenant: str) -> None:
    # 5.9.2.4: "If an existing Entity already matches the Context Source Registration": Conflict
    create(api["M"], sensor("urn:ngsi-ld:Sensor:held", no2=1))
    body = {"type": "ContextSourceRegistration", "endpoint": "http://127.0.0.1:9", "tenant": tenant,
            "mode": "redirect"}
    for info in ([{"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:held"}]}],
                 [{"entities": [{"type": "Sensor"}]}],
                 [{"entities": [{"type": "Sensor", "idPattern": "held$"}], "propertyNames": ["no2"]}]):
        r = api["M"].post("/csourceRegistrations", json={**body, "information": info})
        assert r.status_code == 409 and "urn:ngsi-ld:Sensor:held" in r.json()["detail"], r.text
    for info in ([{"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:other"}]}],
                 [{"entities": [{"type": "Station"}]}],
                 [{"entities": [{"type": "Sensor"}], "propertyNames": ["pm10"]}]):
        r = api["M"].post("/csourceRegistrations", json={**body, "information": info})
        assert r.status_code == 201, r.text
    # an inclusive registration over the same entity stays allowed
    assert api["M"].post("/csourceRegistrations", json={**body, "mode": "inclusive", "information": [
        {"entities": [{"type": "Sensor", "id": "urn:ngsi-ld:Sensor:held"}]}]}).status_code == 201


def station(entity_id: str, **attrs: Any) -> dict[str, Any]:
    return {**sensor(entity_id, **attrs), "type": "Station"}


def test_type_and_attribute_details_and_info_include_registered_sources(brokers: Brokers,
                                                                       api: dict[str, httpx.Client],
                                                                       tenant: str) -> None:
    create(api["M"], sensor("urn:ngsi-ld:Sensor:m", no2=1))
    create(api["M"], station("urn:ngsi-ld:Station:m", pm25=4))
    for i in range(2):
        create(api["A"], station(f"urn:ngsi-ld:Station:a{i}", pm25=9, name="Aix"))
    create(api["A"], {"id": "urn:ngsi-ld:Building:a", "type": "Building", "height": {"type": "Property", "value": 30}})
    # A is registered for its stations only (default operations: federationOps, every discovery operation)
    register(api, "M", brokers.urls["A"], tenant, information=[{"entities": [{"type": "Station"}]}])
    assert api["M"].get("/types").json()["typeList"] == ["Sensor", "Station"]  # not A's Building
    got = api["M"].get("/types", params={"details": "true"})
    assert got.status_code == 200, got.text
    assert [(t["typeName"], t["attributeNames"]) for t in got.json()] == [("Sensor", ["no2"]),
                                                                          ("Station", ["name", "pm25"])]
    info = api["M"].get("/types/Station").json()
    assert info["entityCount"] == 3 and [a["attributeName"] for a in info["attributeDetails"]] == ["name", "pm25"]
    assert api["M"].get("/types/Building").status_code == 404
    attrs = api["M"].get("/attributes", params={"details": "true"}).json()
    assert [(a["attributeName"], a["typeNames"]) for a in attrs] == [("name", ["Station"]), ("no2", ["Sensor"]),
                                                                     ("pm25", ["Station"])]
    name = api["M"].get("/attributes/name")
    assert name.status_code == 200 and name.json()["attributeCount"] == 2 and name.json()["typeNames"] == ["Station"]
    assert api["M"].get("/attributes/pm25").json()["attributeCount"] == 3
    assert api["M"].get("/attributes/name", params={"local": "true"}).status_code == 404
    assert api["M"].get("/types/Station", params={"local": "true"}).json()["entityCount"] == 1


def test_discovery_names_a_source_that_is_down(api: dict[str, httpx.Client], tenant: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    create(api["M"], sensor("urn:ngsi-ld:Sensor:m", no2=1))
    rid = register(api, "M", down, tenant)
    for path, params in (("/types", {"details": "true"}), ("/types/Sensor", {}), ("/attributes", {"details": "true"}),
                         ("/attributes/no2", {})):
        r = api["M"].get(path, params=params)
        assert r.status_code == 200, (path, r.text)
        assert down in r.headers["NGSILD-Warning"] and rid in r.headers["NGSILD-Warning"], path
    assert api["M"].get("/types/Sensor").json()["entityCount"] == 1


class StubSource:
    """A context source on a real socket: serves two @contexts, records every NGSI-LD request it gets and
    answers GETs with `answer` (in its own terms), POSTs with 201."""

    CONTEXTS: ClassVar[dict[str, dict[str, str]]] = {
        "/client.jsonld": {"no2": "https://example.org/ns/nitrogenDioxide", "Sensor": "https://example.org/ns/Sensor"},
        "/source.jsonld": {"NO2": "https://example.org/ns/nitrogenDioxide", "AirSensor": "https://example.org/ns/Sensor"}}

    def __init__(self, answer: Any) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qsl, urlsplit

        requests: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, payload: Any, media: str = "application/json") -> None:
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                requests.append({"method": self.command, "path": parts.path, "query": dict(parse_qsl(parts.query)),
                                 "headers": dict(self.headers.items()),
                                 "body": json.loads(self.rfile.read(length)) if length else None})

            def do_GET(self) -> None:
                if self.path in StubSource.CONTEXTS:
                    self._reply(200, {"@context": StubSource.CONTEXTS[self.path]}, "application/ld+json")
                    return
                self._record()
                self._reply(200, answer)

            def do_POST(self) -> None:
                self._record()
                self._reply(201, None)

            def log_message(self, *args: Any) -> None:
                pass

        self.requests = requests
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def link(self, name: str) -> str:
        return f'<{self.url}/{name}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_context_source_info_headers_accept_and_json_ld_context(api: dict[str, httpx.Client], tenant: str) -> None:
    # clause 4.3.6.5/4.3.6.6: key-value pairs as headers (urn:ngsi-ld:request copies the client's), accept,
    # and jsonldContext: the request compacted with the registration's @context, the answer read with it
    stub = StubSource([{"id": "urn:ngsi-ld:Sensor:stub", "type": "AirSensor", "NO2": {"type": "Property", "value": 42}}])
    try:
        link = {"Link": stub.link("client.jsonld")}
        r = api["M"].post("/csourceRegistrations", headers=link, json={
            "type": "ContextSourceRegistration", "endpoint": stub.url, "information": [{"entities": [{"type": "Sensor"}]}],
            "contextSourceInfo": [{"key": "jsonldContext", "value": f"{stub.url}/source.jsonld"},
                                  {"key": "accept", "value": "application/ld+json"},
                                  {"key": "X-Auth-Token", "value": "secret"},
                                  {"key": "Fiware-User", "value": "urn:ngsi-ld:request"}]})
        assert r.status_code == 201, r.text
        got = api["M"].get("/entities", headers={**link, "Fiware-User": "alice"},
                           params={"type": "Sensor", "attrs": "no2", "q": "no2>10", "options": "keyValues"})
        assert got.status_code == 200 and "NGSILD-Warning" not in got.headers, (got.text, got.headers)
        assert got.json() == [{"id": "urn:ngsi-ld:Sensor:stub", "type": "Sensor", "no2": 42}]
        [sent] = stub.requests
        assert sent["path"] == "/ngsi-ld/v1/entities"
        assert sent["query"]["type"] == "AirSensor" and sent["query"]["attrs"] == "NO2" and sent["query"]["q"] == "NO2>10"
        headers = {k.lower(): v for k, v in sent["headers"].items()}
        assert f"{stub.url}/source.jsonld" in headers["link"] and headers["accept"] == "application/ld+json"
        assert headers["x-auth-token"] == "secret" and headers["fiware-user"] == "alice"
    finally:
        stub.close()


def test_context_source_info_content_type_puts_the_context_in_the_payload(api: dict[str, httpx.Client],
                                                                          tenant: str) -> None:
    stub = StubSource([])
    try:
        link = {"Link": stub.link("client.jsonld")}
        r = api["M"].post("/csourceRegistrations", headers=link, json={
            "type": "ContextSourceRegistration", "endpoint": stub.url, "operations": ["createEntity"],
            "information": [{"entities": [{"type": "Sensor"}]}],
            "contextSourceInfo": [{"key": "contentType", "value": "application/ld+json"}]})
        assert r.status_code == 201, r.text
        created = api["M"].post("/entities", headers=link, json={"id": "urn:ngsi-ld:Sensor:ld", "type": "Sensor",
                                                                 "no2": {"type": "Property", "value": 1}})
        assert created.status_code == 201, created.text
        [sent] = stub.requests
        headers = {k.lower(): v for k, v in sent["headers"].items()}
        assert headers["content-type"] == "application/ld+json" and "link" not in headers
        assert sent["body"]["@context"] == f"{stub.url}/client.jsonld" and sent["body"]["no2"]["value"] == 1
    finally:
        stub.close()


WRITES = ["upsertTemporal", "appendAttrsTemporal", "deleteAttrsTemporal", "deleteTemporal", "retrieveTemporal"]


def test_temporal_writes_are_forwarded_by_registration_mode(brokers: Brokers, api: dict[str, httpx.Client],
                                                            tenant: str) -> None:
    # 5.6.11.4-5.6.16.4: inclusive: here and at the source; exclusive: the registered attributes at the source only
    register(api, "M", brokers.urls["A"], tenant, operations=WRITES, **HISTORY)
    register(api, "M", brokers.urls["B"], tenant, mode="exclusive", operations=WRITES, **HISTORY,
             information=[{"entities": [{"type": "Sensor", "id": EID}], "propertyNames": ["pm10"]}])
    r = api["M"].post("/temporal/entities", json={"id": EID, "type": "Sensor", "no2": [prop(1, "2026-11-26T07:00:00Z")],
                                                  "pm10": [prop(7, "2026-11-26T07:00:00Z")]})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/temporal/entities/{EID}")
    here = api["M"].get(f"/temporal/entities/{EID}", params={"local": "true"}).json()
    at_a = api["A"].get(f"/temporal/entities/{EID}").json()
    at_b = api["B"].get(f"/temporal/entities/{EID}").json()
    assert set(here) - {"id", "type"} == {"no2"} and set(at_a) - {"id", "type"} == {"no2", "pm10"}
    assert set(at_b) - {"id", "type"} == {"pm10"}
    r = api["M"].post(f"/temporal/entities/{EID}/attrs", json={"no2": [prop(2, "2026-11-26T08:00:00Z")]})
    assert r.status_code == 204, r.text
    assert len(api["A"].get(f"/temporal/entities/{EID}", params={"attrs": "no2"}).json()["no2"]) == 2
    assert api["M"].delete(f"/temporal/entities/{EID}/attrs/no2").status_code == 204
    assert "no2" not in api["A"].get(f"/temporal/entities/{EID}").json()
    assert api["M"].delete(f"/temporal/entities/{EID}").status_code == 204
    for town in ("A", "B"):
        assert api[town].get(f"/temporal/entities/{EID}").status_code == 404
    assert api["M"].get(f"/temporal/entities/{EID}").status_code == 404


def test_a_temporal_write_to_a_source_that_is_down_is_a_partial_success(api: dict[str, httpx.Client],
                                                                        tenant: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    rid = register(api, "M", down, tenant, operations=WRITES, **HISTORY)
    r = api["M"].post("/temporal/entities", json={"id": EID, "type": "Sensor", "no2": [prop(1, "2026-11-26T07:00:00Z")]})
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [EID]
    [error] = r.json()["errors"]
    assert error["registrationId"] == rid and error["endpoint"] == down and error["error"]["status"] == 502
    assert api["M"].get(f"/temporal/entities/{EID}", params={"local": "true"}).status_code == 200
