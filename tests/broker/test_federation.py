"""Federation between real broker processes on loopback (clauses 4.3.6, 5.9, 6.3.17).

Three `metropole broker` processes: the metropolitan one (M) and two towns
(A, B). Each test works in a tenant of its own; a registration at M names
that tenant (`tenant` member), so M's forwarded requests land in the same
tenant at the towns. A source that is down is a closed port; a slow source
is a real socket that accepts and never answers (until the test ends).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.procs import Managed, broker_process, free_port

API = "/ngsi-ld/v1"
TIMEOUT = "1.5"  # the metropolitan broker's per-source timeout (METROPOLE_BROKER_FEDERATION_TIMEOUT)


class Brokers:
    """The three broker processes and their base URLs."""

    def __init__(self, procs: dict[str, Managed], urls: dict[str, str]) -> None:
        self.procs, self.urls = procs, urls


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    procs: dict[str, Managed] = {}
    urls: dict[str, str] = {}
    try:
        for name in ("M", "A", "B"):
            port = free_port()
            data = tmp_path_factory.mktemp(f"federation-{name}")
            proc = broker_process(data, port, log=data / "broker.log")
            proc.env = {"METROPOLE_BROKER_FEDERATION_TIMEOUT": TIMEOUT}
            proc.start()
            procs[name], urls[name] = proc, f"http://127.0.0.1:{port}"
        yield Brokers(procs, urls)
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture
def tenant() -> str:
    return f"fed{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api(brokers: Brokers, tenant: str) -> Iterator[dict[str, httpx.Client]]:
    clients = {n: httpx.Client(base_url=u + API, headers={"NGSILD-Tenant": tenant}, timeout=30)
               for n, u in brokers.urls.items()}
    yield clients
    for c in clients.values():
        c.close()


def sensor(entity_id: str, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Sensor",
            **{k: v if isinstance(v, (dict, list)) else {"type": "Property", "value": v} for k, v in attrs.items()}}


def create(client: httpx.Client, entity: dict[str, Any]) -> None:
    r = client.post("/entities", json=entity)
    assert r.status_code == 201, r.text


def register(api: dict[str, httpx.Client], at: str, source_url: str, tenant: str, **members: Any) -> str:
    body = {"type": "ContextSourceRegistration", "endpoint": source_url, "tenant": tenant,
            "information": [{"entities": [{"type": "Sensor"}]}], **members}
    r = api[at].post("/csourceRegistrations", json=body)
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["id"] for e in response.json()}


def test_inclusive_query_and_retrieve_merge_both_towns(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    create(api["A"], sensor("urn:ngsi-ld:Sensor:aix-1", no2=41))
    create(api["B"], sensor("urn:ngsi-ld:Sensor:marseille-1", no2=63))
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-1", no2=20))
    register(api, "M", brokers.urls["A"], tenant)
    register(api, "M", brokers.urls["B"], tenant)
    got = api["M"].get("/entities", params={"type": "Sensor", "count": "true"})
    assert ids(got) == {"urn:ngsi-ld:Sensor:aix-1", "urn:ngsi-ld:Sensor:marseille-1", "urn:ngsi-ld:Sensor:metro-1"}
    assert got.headers["NGSILD-Results-Count"] == "3" and "NGSILD-Warning" not in got.headers
    one = api["M"].get("/entities/urn:ngsi-ld:Sensor:aix-1", params={"options": "keyValues"})
    assert one.status_code == 200 and one.json()["no2"] == 41
    assert ids(api["M"].get("/entities", params={"type": "Sensor", "local": "true"})) == {"urn:ngsi-ld:Sensor:metro-1"}
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:aix-1", params={"local": "true"}).status_code == 404
    assert ids(api["M"].get("/entities", params={"type": "Sensor", "q": "no2>50"})) == {"urn:ngsi-ld:Sensor:marseille-1"}


def test_temporal_query_includes_registered_history(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    create(api["A"], sensor("urn:ngsi-ld:Sensor:hist-a", no2={"type": "Property", "value": 40,
                                                             "observedAt": "2026-11-26T07:00:00Z"}))
    create(api["M"], sensor("urn:ngsi-ld:Sensor:hist-m", no2={"type": "Property", "value": 20,
                                                             "observedAt": "2026-11-26T08:00:00Z"}))
    # a registration for history: queryTemporal, with the interval the source has observations for (5.10.2.4)
    register(api, "M", brokers.urls["A"], tenant, operations=["queryTemporal", "retrieveTemporal"],
             observationInterval={"startAt": "2026-01-01T00:00:00Z"})
    params = {"type": "Sensor", "timerel": "after", "timeAt": "2026-11-01T00:00:00Z"}
    got = api["M"].get("/temporal/entities", params=params)
    assert got.status_code == 200, got.text
    assert {e["id"] for e in got.json()} == {"urn:ngsi-ld:Sensor:hist-a", "urn:ngsi-ld:Sensor:hist-m"}
    local = api["M"].get("/temporal/entities", params={**params, "local": "true"}).json()
    assert {e["id"] for e in local} == {"urn:ngsi-ld:Sensor:hist-m"}
    # the registration for history is not one for current state
    assert ids(api["M"].get("/entities", params={"type": "Sensor"})) == {"urn:ngsi-ld:Sensor:hist-m"}


def test_types_and_attributes_include_registered_sources(brokers: Brokers, api: dict[str, httpx.Client],
                                                         tenant: str) -> None:
    create(api["A"], {"id": "urn:ngsi-ld:Station:aix", "type": "Station", "pm25": {"type": "Property", "value": 9}})
    create(api["M"], sensor("urn:ngsi-ld:Sensor:metro-2", no2=20))
    register(api, "M", brokers.urls["A"], tenant, information=[{"entities": [{"type": "Station"}]}])
    assert api["M"].get("/types").json()["typeList"] == ["Sensor", "Station"]
    assert api["M"].get("/attributes").json()["attributeList"] == ["no2", "pm25"]
    assert api["M"].get("/types", params={"local": "true"}).json()["typeList"] == ["Sensor"]


def test_merge_is_dataset_aware_and_most_recent_observed_at_wins(brokers: Brokers, api: dict[str, httpx.Client],
                                                                 tenant: str) -> None:
    eid = "urn:ngsi-ld:Sensor:shared"
    create(api["M"], sensor(eid, no2={"type": "Property", "value": 10, "observedAt": "2026-01-01T00:00:00Z"},
                            pm10={"type": "Property", "value": 5}))
    create(api["A"], sensor(eid, no2=[{"type": "Property", "value": 30, "observedAt": "2026-06-01T00:00:00Z"},
                                      {"type": "Property", "value": 31, "datasetId": "urn:ngsi-ld:Dataset:lab"}]))
    register(api, "M", brokers.urls["A"], tenant)
    doc = api["M"].get(f"/entities/{eid}").json()
    instances = doc["no2"] if isinstance(doc["no2"], list) else [doc["no2"]]
    by_dataset = {i.get("datasetId"): i["value"] for i in instances}
    assert by_dataset == {None: 30, "urn:ngsi-ld:Dataset:lab": 31}
    assert doc["pm10"]["value"] == 5


def test_auxiliary_never_overrides_local_data(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    eid = "urn:ngsi-ld:Sensor:aux"
    create(api["M"], sensor(eid, no2=10))
    create(api["A"], sensor(eid, no2=99, noise=55))
    create(api["A"], sensor("urn:ngsi-ld:Sensor:aux-only", no2=1))
    register(api, "M", brokers.urls["A"], tenant, mode="auxiliary", operations=["retrieveOps"])
    doc = api["M"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()
    assert doc["no2"] == 10 and doc["noise"] == 55
    assert "urn:ngsi-ld:Sensor:aux-only" in ids(api["M"].get("/entities", params={"type": "Sensor"}))
    # auxiliary registrations take no unsafe operation: a create stays local
    create(api["M"], sensor("urn:ngsi-ld:Sensor:aux-new", no2=3))
    assert api["A"].get("/entities/urn:ngsi-ld:Sensor:aux-new").status_code == 404


def test_inclusive_create_merge_delete_are_forwarded(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    register(api, "M", brokers.urls["A"], tenant, operations=["redirectionOps"])
    eid = "urn:ngsi-ld:Sensor:both"
    create(api["M"], sensor(eid, no2=1))
    assert api["A"].get(f"/entities/{eid}").status_code == 200
    assert api["M"].get(f"/entities/{eid}", params={"local": "true"}).status_code == 200
    assert api["M"].patch(f"/entities/{eid}", json={"no2": {"type": "Property", "value": 2}}).status_code == 204
    assert api["A"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 2
    assert api["M"].patch(f"/entities/{eid}/attrs/no2", json={"value": 3}).status_code == 204
    assert api["A"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 3
    # local=true (6.3.18): this broker only; the source keeps 3 (the handler reads `local` only with a query string)
    assert api["M"].patch(f"/entities/{eid}/attrs/no2", params={"local": "true"}, json={"value": 4}).status_code == 204
    assert api["A"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 3
    local = api["M"].get(f"/entities/{eid}", params={"local": "true", "options": "keyValues"}).json()
    assert local["no2"] == 4
    assert api["M"].delete(f"/entities/{eid}").status_code == 204
    assert api["A"].get(f"/entities/{eid}").status_code == 404
    assert api["M"].get(f"/entities/{eid}", params={"local": "true"}).status_code == 404


def test_exclusive_attributes_live_at_the_source_only(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    eid = "urn:ngsi-ld:Sensor:exclusive"
    create(api["M"], sensor(eid, pm10=5))
    create(api["A"], sensor(eid, no2=1))
    register(api, "M", brokers.urls["A"], tenant, mode="exclusive", operations=["redirectionOps"],
             information=[{"entities": [{"type": "Sensor", "id": eid}], "propertyNames": ["no2"]}])
    r = api["M"].patch(f"/entities/{eid}/attrs", json={"no2": {"type": "Property", "value": 7},
                                                       "pm10": {"type": "Property", "value": 6}})
    assert r.status_code == 204, r.text
    assert api["A"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 7
    local = api["M"].get(f"/entities/{eid}", params={"local": "true", "options": "keyValues"}).json()
    assert local["pm10"] == 6 and "no2" not in local
    merged = api["M"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()
    assert merged["no2"] == 7 and merged["pm10"] == 6


def test_a_partial_success_at_a_source_is_a_partial_success_here(brokers: Brokers, api: dict[str, httpx.Client],
                                                                 tenant: str) -> None:
    # append with noOverwrite (5.6.3.4): the source holds no2 already, so it answers 207; M must not say 204
    eid = "urn:ngsi-ld:Sensor:partial"
    create(api["M"], sensor(eid, pm10=5))
    create(api["A"], sensor(eid, no2=1))
    register(api, "M", brokers.urls["A"], tenant, mode="exclusive", operations=["redirectionOps"],
             information=[{"entities": [{"type": "Sensor", "id": eid}], "propertyNames": ["no2"]}])
    r = api["M"].post(f"/entities/{eid}/attrs", params={"options": "noOverwrite"},
                      json={"no2": {"type": "Property", "value": 9}, "pm25": {"type": "Property", "value": 3}})
    assert r.status_code == 207, r.text
    result = r.json()
    core = "https://uri.etsi.org/ngsi-ld/default-context/"  # UpdateResult names attributes by IRI, here as at A
    assert result["updated"] == [core + "pm25"]
    assert [(n["attributeName"], n["registrationId"]) for n in result["notUpdated"]] == [
        (core + "no2", api["M"].get("/csourceRegistrations", params={"type": "Sensor"}).json()[0]["id"])]
    assert api["A"].get(f"/entities/{eid}", params={"options": "keyValues"}).json()["no2"] == 1


def test_purge_is_forwarded_to_the_sources_registered_for_it(brokers: Brokers, api: dict[str, httpx.Client],
                                                             tenant: str) -> None:
    # 5.6.21 with 4.3.6: DELETE /entities?type= purges here and at the sources offering purgeEntity
    create(api["M"], sensor("urn:ngsi-ld:Sensor:purge-m", no2=1))
    create(api["A"], sensor("urn:ngsi-ld:Sensor:purge-a", no2=2))
    create(api["B"], sensor("urn:ngsi-ld:Sensor:purge-b", no2=3))
    register(api, "M", brokers.urls["A"], tenant, operations=["redirectionOps"])  # includes purgeEntity
    register(api, "M", brokers.urls["B"], tenant, operations=["retrieveOps"])  # does not
    r = api["M"].delete("/entities", params={"type": "Sensor"})
    assert r.status_code == 204, r.text
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:purge-m", params={"local": "true"}).status_code == 404
    assert api["A"].get("/entities/urn:ngsi-ld:Sensor:purge-a").status_code == 404
    assert api["B"].get("/entities/urn:ngsi-ld:Sensor:purge-b").status_code == 200
    assert api["M"].delete("/entities", params={"type": "Sensor", "q": "no2=="}).status_code == 400


def test_retrieve_asks_a_source_offering_only_query_batch(brokers: Brokers, api: dict[str, httpx.Client],
                                                          tenant: str) -> None:
    # 4.3.6.2: retrieveEntity may be served by a queryBatch source (POST /entityOperations/query with the id)
    create(api["A"], sensor("urn:ngsi-ld:Sensor:batch-only", no2=8))
    register(api, "M", brokers.urls["A"], tenant, operations=["queryBatch"])
    got = api["M"].get("/entities/urn:ngsi-ld:Sensor:batch-only", params={"options": "keyValues"})
    assert got.status_code == 200, got.text
    assert got.json()["no2"] == 8


def test_redirect_sends_whole_entities_to_the_source(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    register(api, "M", brokers.urls["B"], tenant, mode="redirect", operations=["redirectionOps"])
    eid = "urn:ngsi-ld:Sensor:redirected"
    create(api["M"], sensor(eid, no2=4))
    assert api["B"].get(f"/entities/{eid}").status_code == 200
    assert api["M"].get(f"/entities/{eid}", params={"local": "true"}).status_code == 404
    assert api["M"].get(f"/entities/{eid}").status_code == 200


def test_batch_operations_are_forwarded(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    register(api, "M", brokers.urls["A"], tenant, operations=["createBatch", "upsertBatch", "deleteBatch",
                                                                 "retrieveOps"])
    batch = [sensor(f"urn:ngsi-ld:Sensor:batch-{i}", no2=i) for i in range(3)]
    r = api["M"].post("/entityOperations/upsert", json=batch)
    assert r.status_code == 201, r.text
    for i in range(3):
        assert api["A"].get(f"/entities/urn:ngsi-ld:Sensor:batch-{i}").status_code == 200
        assert api["M"].get(f"/entities/urn:ngsi-ld:Sensor:batch-{i}", params={"local": "true"}).status_code == 200
    r = api["M"].post("/entityOperations/delete", json=[e["id"] for e in batch])
    assert r.status_code == 204, r.text
    assert api["A"].get("/entities/urn:ngsi-ld:Sensor:batch-0").status_code == 404
    # a source that refuses part of a batch: its errors come back naming the registration
    rid = register(api, "M", f"http://127.0.0.1:{free_port()}", tenant, operations=["createBatch"])
    r = api["M"].post("/entityOperations/create", json=[sensor("urn:ngsi-ld:Sensor:batch-x", no2=1)])
    assert r.status_code == 207, r.text
    assert [e["registrationId"] for e in r.json()["errors"]] == [rid]


def test_batch_delete_deletes_here_and_at_exclusive_and_redirect_sources(brokers: Brokers,
                                                                         api: dict[str, httpx.Client],
                                                                         tenant: str) -> None:
    # 5.6.10.4: every id of a batch delete is deleted locally as well as forwarded; with an exclusive
    # registration the unregistered attributes are held here (4.3.6.3), so the entity goes here too
    held = [f"urn:ngsi-ld:Sensor:exc-del-{i}" for i in range(2)]
    for eid in held:
        create(api["M"], sensor(eid, pm10=5))
        create(api["A"], sensor(eid, no2=1))
    register(api, "M", brokers.urls["A"], tenant, mode="exclusive", operations=["deleteBatch", "retrieveOps"],
             information=[{"entities": [{"type": "Sensor", "id": eid} for eid in held], "propertyNames": ["no2"]}])
    # a redirect registration for a whole entity held at B only: not held here is no error when B deleted it
    away = "urn:ngsi-ld:Sensor:red-del"
    create(api["B"], sensor(away, no2=2))
    register(api, "M", brokers.urls["B"], tenant, mode="redirect", operations=["deleteBatch", "retrieveOps"],
             information=[{"entities": [{"type": "Sensor", "id": away}]}])
    r = api["M"].post("/entityOperations/delete", json=[*held, away])
    assert r.status_code == 204, r.text
    for eid in held:
        assert api["M"].get(f"/entities/{eid}", params={"local": "true"}).status_code == 404
        assert api["A"].get(f"/entities/{eid}").status_code == 404
    assert api["B"].get(f"/entities/{away}").status_code == 404
    assert ids(api["M"].get("/entities", params={"type": "Sensor"})) == set()


def test_a_source_that_is_down_is_named_and_local_data_still_answered(api: dict[str, httpx.Client], tenant: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    create(api["M"], sensor("urn:ngsi-ld:Sensor:local", no2=1))
    rid = register(api, "M", down, tenant, operations=["redirectionOps"])
    r = api["M"].get("/entities", params={"type": "Sensor"})
    assert ids(r) == {"urn:ngsi-ld:Sensor:local"}
    assert down in r.headers["NGSILD-Warning"] and rid in r.headers["NGSILD-Warning"]
    one = api["M"].get("/entities/urn:ngsi-ld:Sensor:local")
    assert one.status_code == 200 and down in one.headers["NGSILD-Warning"]
    reg = api["M"].get(f"/csourceRegistrations/{rid}").json()
    assert reg["status"] == "failed" and reg["timesFailed"] >= 1 and "lastFailure" in reg
    # an unsafe operation: done here, the source that failed named in a 207
    created = api["M"].post("/entities", json=sensor("urn:ngsi-ld:Sensor:partial", no2=2))
    assert created.status_code == 207
    failed = created.json()["errors"]
    assert [f["registrationId"] for f in failed] == [rid] and failed[0]["endpoint"] == down
    assert failed[0]["error"]["status"] == 502 and created.json()["success"] == ["urn:ngsi-ld:Sensor:partial"]
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:partial", params={"local": "true"}).status_code == 200


def test_the_only_exclusive_source_down_is_bad_gateway(api: dict[str, httpx.Client], tenant: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    register(api, "M", down, tenant, mode="redirect", operations=["redirectionOps"])
    r = api["M"].post("/entities", json=sensor("urn:ngsi-ld:Sensor:nowhere", no2=2))
    assert r.status_code == 502 and down in r.json()["detail"]


class SilentSource:
    """A real listening socket that accepts connections and never answers (a hung context source)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_a_slow_source_times_out_and_the_others_still_answer(brokers: Brokers, api: dict[str, httpx.Client],
                                                             tenant: str) -> None:
    slow = SilentSource()
    try:
        create(api["A"], sensor("urn:ngsi-ld:Sensor:quick", no2=1))
        register(api, "M", brokers.urls["A"], tenant)
        register(api, "M", slow.url, tenant)
        r = api["M"].get("/entities", params={"type": "Sensor"})
        assert ids(r) == {"urn:ngsi-ld:Sensor:quick"}
        assert slow.url in r.headers["NGSILD-Warning"] and "no answer within" in r.headers["NGSILD-Warning"]
        assert slow.accepted  # the request did reach it
    finally:
        slow.close()


def test_a_registration_loop_terminates(brokers: Brokers, api: dict[str, httpx.Client], tenant: str) -> None:
    # M -> A -> B -> M: every broker registers the next one for the same type
    create(api["M"], sensor("urn:ngsi-ld:Sensor:m", no2=1))
    create(api["A"], sensor("urn:ngsi-ld:Sensor:a", no2=2))
    create(api["B"], sensor("urn:ngsi-ld:Sensor:b", no2=3))
    for at, source in (("M", "A"), ("A", "B"), ("B", "M")):
        register(api, at, brokers.urls[source], tenant, operations=["redirectionOps"])
    expected = {"urn:ngsi-ld:Sensor:m", "urn:ngsi-ld:Sensor:a", "urn:ngsi-ld:Sensor:b"}
    for name in ("M", "A", "B"):
        assert ids(api[name].get("/entities", params={"type": "Sensor"})) == expected
    assert api["M"].get("/entities/urn:ngsi-ld:Sensor:b").status_code == 200
    # a create goes round once: B leaves out its registration of M, already in Via, and stops there
    r = api["M"].post("/entities", json=sensor("urn:ngsi-ld:Sensor:loop", no2=4))
    assert r.status_code == 201, r.text
    for name in ("M", "A", "B"):
        assert api[name].get("/entities/urn:ngsi-ld:Sensor:loop", params={"local": "true"}).status_code == 200
    # a request that reaches a broker a second time (its own host:port in Via) is 508 Loop Detected
    me = brokers.urls["M"].removeprefix("http://")
    again = api["M"].delete("/entities/urn:ngsi-ld:Sensor:loop", headers={"Via": f"1.1 {me}"})
    assert again.status_code == 508 and again.json()["type"].endswith("/LoopDetected")


def test_csource_subscription_is_notified_of_a_new_registration(brokers: Brokers, api: dict[str, httpx.Client],
                                                                tenant: str) -> None:
    from tests.broker.federation_receiver import Receiver

    with Receiver() as receiver:
        r = api["M"].post("/csourceSubscriptions", json={
            "type": "Subscription", "entities": [{"type": "Sensor"}],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}}})
        assert r.status_code == 201, r.text
        rid = register(api, "M", brokers.urls["A"], tenant)
        note = receiver.next()
        assert note["type"] == "ContextSourceNotification" and note["triggerReason"] == "newlyMatching"
        assert [d["id"] for d in note["data"]] == [rid]
        assert api["M"].delete(f"/csourceRegistrations/{rid}").status_code == 204
        gone = receiver.next()
        assert gone["triggerReason"] == "noLongerMatching" and gone["data"][0]["id"] == rid


def test_a_subscription_at_the_metropolis_is_notified_of_both_towns(brokers: Brokers, api: dict[str, httpx.Client],
                                                                    tenant: str) -> None:
    # 5.8.1.4 (localOnly=false): copies of the subscription at the sources offering createSubscription
    # (federationOps, the default), their notifications relayed to the subscriber under the original id
    from tests.broker.federation_receiver import Receiver

    create(api["A"], sensor("urn:ngsi-ld:Sensor:sub-aix", no2=1))
    create(api["B"], sensor("urn:ngsi-ld:Sensor:sub-marseille", no2=2))
    create(api["M"], sensor("urn:ngsi-ld:Sensor:sub-metro", no2=3))
    register(api, "M", brokers.urls["A"], tenant)
    register(api, "M", brokers.urls["B"], tenant)
    with Receiver() as receiver:
        r = api["M"].post("/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["no2"],
            "notification": {"format": "keyValues", "endpoint": {"uri": receiver.url, "accept": "application/json"}}})
        assert r.status_code == 201, r.text
        sub_id = r.headers["location"].rsplit("/", 1)[1]
        copies = api["A"].get("/subscriptions").json()
        assert len(copies) == 1 and copies[0]["notification"]["endpoint"]["uri"].startswith(brokers.urls["M"])
        for town, eid, value in (("A", "urn:ngsi-ld:Sensor:sub-aix", 77), ("B", "urn:ngsi-ld:Sensor:sub-marseille", 88),
                                 ("M", "urn:ngsi-ld:Sensor:sub-metro", 99)):
            assert api[town].patch(f"/entities/{eid}/attrs", json={"no2": {"type": "Property", "value": value}}
                                   ).status_code == 204
        wanted = {"urn:ngsi-ld:Sensor:sub-aix": 77, "urn:ngsi-ld:Sensor:sub-marseille": 88,
                  "urn:ngsi-ld:Sensor:sub-metro": 99}
        seen: dict[str, Any] = {}
        for _ in range(12):  # initial notifications (old values) may come first
            note = receiver.next()
            assert note["subscriptionId"] == sub_id
            seen.update({e["id"]: e["no2"] for e in note["data"]})
            if all(seen.get(k) == v for k, v in wanted.items()):
                break
        assert {k: seen.get(k) for k in wanted} == wanted
    assert api["M"].delete(f"/subscriptions/{sub_id}").status_code == 204
    assert api["A"].get("/subscriptions").json() == [] and api["B"].get("/subscriptions").json() == []


def test_csource_notification_holds_only_the_matching_registration_infos(brokers: Brokers,
                                                                          api: dict[str, httpx.Client],
                                                                          tenant: str) -> None:
    # 5.11.7: "only matching RegistrationInfo elements" of the registration are notified
    from tests.broker.federation_receiver import Receiver

    with Receiver() as receiver:
        r = api["M"].post("/csourceSubscriptions", json={
            "type": "Subscription", "entities": [{"type": "Sensor"}],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}}})
        assert r.status_code == 201, r.text
        rid = register(api, "M", brokers.urls["A"], tenant, information=[
            {"entities": [{"type": "Station"}]}, {"entities": [{"type": "Sensor"}], "propertyNames": ["no2"]}])
        note = receiver.next()
        assert note["triggerReason"] == "newlyMatching" and note["data"][0]["id"] == rid
        assert note["data"][0]["information"] == [{"entities": [{"type": "Sensor"}], "propertyNames": ["no2"]}]
        # the registration itself is unchanged
        assert len(api["M"].get(f"/csourceRegistrations/{rid}").json()["information"]) == 2


def test_subscription_copies_are_relayed_through_the_public_url(brokers: Brokers, api: dict[str, httpx.Client],
                                                               tenant: str, tmp_path: Any) -> None:
    # METROPOLE_BROKER_PUBLIC_URL: the relay endpoint a copy notifies is built on it, not on --host (127.0.0.1);
    # `localhost` reaches the same broker, so the relayed notification still arrives
    from tests.broker.federation_receiver import Receiver

    port = free_port()
    public = f"http://localhost:{port}"
    proc = broker_process(tmp_path / "public", port, log=tmp_path / "public.log")
    proc.env = {"METROPOLE_BROKER_FEDERATION_TIMEOUT": TIMEOUT, "METROPOLE_BROKER_PUBLIC_URL": public + "/"}
    proc.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers={"NGSILD-Tenant": tenant},
                          timeout=30) as metro, Receiver() as receiver:
            create(api["A"], sensor("urn:ngsi-ld:Sensor:pub-aix", no2=1))
            r = metro.post("/csourceRegistrations", json={
                "type": "ContextSourceRegistration", "endpoint": brokers.urls["A"], "tenant": tenant,
                "information": [{"entities": [{"type": "Sensor"}]}]})
            assert r.status_code == 201, r.text
            r = metro.post("/subscriptions", json={
                "type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["no2"],
                "notification": {"format": "keyValues",
                                 "endpoint": {"uri": receiver.url, "accept": "application/json"}}})
            assert r.status_code == 201, r.text
            sub_id = r.headers["location"].rsplit("/", 1)[1]
            copies = api["A"].get("/subscriptions").json()
            assert len(copies) == 1
            assert copies[0]["notification"]["endpoint"]["uri"].startswith(f"{public}{API}/federation/notify/")
            assert api["A"].patch("/entities/urn:ngsi-ld:Sensor:pub-aix/attrs",
                                  json={"no2": {"type": "Property", "value": 42}}).status_code == 204
            for _ in range(6):  # the initial notification (old value) may come first
                note = receiver.next()
                assert note["subscriptionId"] == sub_id
                if note["data"][0]["no2"] == 42:
                    break
            assert note["data"][0]["no2"] == 42
            assert metro.delete(f"/subscriptions/{sub_id}").status_code == 204
    finally:
        proc.stop()


def test_a_public_url_that_is_no_http_url_is_refused() -> None:
    from broker.settings import BrokerSettings

    assert BrokerSettings(public_url="https://metropole.example/broker").public_url.endswith("/broker")
    for bad in ("metropole.example", "ftp://metropole.example", "http://metropole.example/?a=1", "http://"):
        with pytest.raises(ValueError, match="public URL"):
            BrokerSettings(public_url=bad)
