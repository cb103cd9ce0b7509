"""POST /v2/notify ingest (broker.quantumleap.ingest): the rows it makes, concurrent notifications, read-your-writes.

The rows of the plain-Property path must be those the general path (TemporalService._temporal_rows, what
write_many stores) makes, field by field, and every body that path refuses must be refused the same way.
Notifications posted by several clients at once must leave what the same notifications posted one after
the other leave. Real SQLite and PostgreSQL brokers over a real socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.quantumleap import ingest
from broker.quantumleap import notify as nt
from broker.service.temporal import TemporalService
from broker.store import open_store
from broker.temporal.model import EntityRow, to_us
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.runtime import open_history
from broker.temporal.storage import TimeRange
from models.context import SDM_ALL_CONTEXT_URL, ContextResolver
from models.errors import NgsiLdError
from tests import services
from tests.broker.conftest import new_id
from tests.pg import adrop_schema, schema_name

STAMP = "2026-12-06T10:00:00.123Z"
AT = "2026-03-01T00:00:05Z"


@pytest.fixture(scope="module")
def ctx() -> Any:
    resolver = ContextResolver()
    return resolver.resolve(SDM_ALL_CONTEXT_URL)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths read the clock once per entity: the same moment for both, so their rows can be compared."""
    monkeypatch.setattr("broker.quantumleap.ingest.now_stamp", lambda: (STAMP, to_us(STAMP)))
    monkeypatch.setattr("broker.service.temporal.utc_now", lambda: STAMP)


def v2(**attrs: Any) -> dict[str, Any]:
    return {"id": "AirQualityObserved:00001", "type": "AirQualityObserved", **attrs}


CASES: list[dict[str, Any]] = [
    v2(TimeInstant={"type": "DateTime", "value": AT}, no2={"type": "Number", "value": 20},
       o3={"type": "Number", "value": 40.5}, pm25={"type": "Number", "value": "6.25"}),
    v2(temperature={"type": "Number", "value": 11.5, "metadata": {"unitCode": {"value": "CEL"}}}),
    v2(count={"type": "Integer", "value": "7"}, on={"type": "Boolean", "value": "true"}, name={"type": "Text", "value": 12}),
    v2(note={"type": "Text", "value": "hello"}, seen={"type": "DateTime", "value": "2026-03-01T01:02:03.456Z"}),
    v2(other={"type": "StructuredValue", "value": {"a": [1, 2]}}, listed={"type": "Custom", "value": [1, "x"]}),
    v2(location={"type": "geo:point", "value": "43.3, -3.8"}, ref={"type": "Relationship", "value": "urn:ngsi-ld:X:1"}),
    v2(plain=5, text="x"),
    v2(nulled={"type": "Text", "value": "urn:ngsi-ld:null"}),  # refused: a null value
    v2(unit={"type": "Number", "value": 1, "metadata": {"unitCode": {"value": ""}}}),  # refused: an empty unitCode
    v2(**{"bad name": {"type": "Number", "value": 1}}),  # refused: not an NGSI-LD name
    v2(when={"type": "Number", "value": 1, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2026-03-01"}}}),
    {"id": "urn:ngsi-ld:T:1", "type": "T", "x": {"type": "Number", "value": 1}},
]


def _outcome(fn: Any) -> Any:
    try:
        types, rows = fn()
    except NgsiLdError as exc:
        return ("refused", type(exc).__name__, str(exc))
    return types, [dataclasses.asdict(r) for r in rows]


@pytest.mark.parametrize("n", range(len(CASES)))
def test_prepared_rows_are_the_general_paths(n: int, ctx: Any, frozen: None) -> None:
    entity = nt.v2_entity(CASES[n], None, STAMP)
    eid = entity["id"]

    def fast() -> tuple[list[str], list[Any]]:
        p = ingest.prepare("t", eid, entity, ctx)
        return p.types, p.rows

    def general() -> tuple[list[str], list[Any]]:
        return TemporalService._temporal_rows("t", eid, entity, ctx, None, adding=False)

    assert _outcome(fast) == _outcome(general)


def test_the_benchmarks_shape_takes_the_plain_path(ctx: Any, frozen: None) -> None:
    """The shape Orion notifies (numbers, DateTime, unitCode) must not fall back to the general path."""
    for case in (CASES[0], CASES[1], CASES[3]):
        entity = nt.v2_entity(case, None, STAMP)
        assert ingest._fast("t", entity["id"], entity, ctx) is not None
    refused = nt.v2_entity(CASES[7], None, STAMP)
    assert ingest._fast("t", refused["id"], refused, ctx) is None


def _measure(eid: str, seq: int, etype: str = "AirQualityObserved") -> dict[str, Any]:
    at = f"2026-03-01T00:{seq // 60:02d}:{seq % 60:02d}Z"
    return {"id": eid, "type": etype, "TimeInstant": {"type": "DateTime", "value": at},
            "no2": {"type": "Number", "value": 20 + seq}, "temperature": {"type": "Number", "value": 11.5 + seq,
                                                                          "metadata": {"unitCode": {"value": "CEL"}}}}


def _answers(c: httpx.Client, clients: int) -> list[Any]:
    out = []
    for k in range(clients):
        out.append(c.get(f"/entities/S{k}", params={"limit": 1000}).json())
        out.append(c.get(f"/entities/Shared{k % 2}", params={"type": "Office"}).json())
        out.append(c.get(f"/entities/urn:ngsi-ld:Mixed:{k}", params={"type": "Room"}).json())
        out.append(c.get(f"/entities/urn:ngsi-ld:Mixed:{k}", params={"type": "Office"}).json())
    out.append(c.get("/types/AirQualityObserved").json())
    out.append(c.get("/entities/S0/attrs/no2", params={"aggrMethod": "avg", "aggrPeriod": "hour"}).json())
    return out


def test_notifications_written_together_store_what_one_after_the_other_store(broker_url: str) -> None:
    """8 clients at once and the same notifications in turn leave the same history:
    each client's entity, an entity two clients share with types adding up, service paths, rows replaced in order."""
    clients, each = 8, 12

    def bodies(k: int) -> list[dict[str, Any]]:
        out = []
        for j in range(each):
            data = [_measure(f"S{k}", j), _measure(f"S{k}", j)]  # an entity given twice: the later one stays
            data[1]["no2"]["value"] = 1000 + j
            if j == each - 1:
                data.append(_measure(f"Shared{k % 2}", 100 + k, etype="Office"))
            if j in (5, 6):  # one client's entity of two types, one after the other: types add up
                data.append(_measure(f"urn:ngsi-ld:Mixed:{k}", j, etype="Room" if j == 5 else "Office"))
            out.append({"subscriptionId": "s", "data": data})
        return out

    answers = []
    for together in (True, False):
        tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
        headers = {"Fiware-Service": tenant, "Fiware-ServicePath": "/district"}
        failures: list[str] = []

        def post(k: int, headers: dict[str, str] = headers, failures: list[str] = failures) -> None:
            with httpx.Client(base_url=broker_url + "/v2", headers=headers, timeout=60) as c:
                for body in bodies(k):
                    r = c.post("/notify", json=body)
                    if r.status_code != 200 or r.text != "Notification successfully processed":
                        failures.append(r.text)

        if together:
            threads = [threading.Thread(target=post, args=(k,)) for k in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for k in range(clients):
                post(k)
        assert not failures
        with httpx.Client(base_url=broker_url + "/v2", headers=headers, timeout=30) as c:
            answers.append(_answers(c, clients))
            with httpx.Client(base_url=broker_url + "/v2", headers={**headers, "Fiware-ServicePath": "/other"},
                              timeout=30) as other:
                assert other.get("/entities/S0").status_code == 404  # the service path was recorded
    assert answers[0] == answers[1]
    assert answers[0][0]["index"][0] == "2026-03-01T00:00:00.000+00:00"
    assert answers[0][2]["entityType"] == answers[0][3]["entityType"] == "Room"  # found by either type, shown by its first
    no2 = next(a for a in answers[0][0]["attributes"] if a["attrName"] == "no2")
    assert no2["values"][:2] == [1000.0, 1001.0]


def test_a_bad_notification_among_others_fails_alone(broker_url: str) -> None:
    """Concurrent notifications, one of them refused: the others are stored, the refused one answers 400."""
    tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
    results: dict[int, int] = {}

    def post(k: int) -> None:
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=60) as c:
            data = [_measure(f"B{k}", 0)]
            if k == 3:
                data[0]["note"] = {"type": "Text", "value": "urn:ngsi-ld:null"}
            results[k] = c.post("/notify", json={"data": data}).status_code

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: 400 if k == 3 else 200 for k in range(8)}
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
        for k in range(8):
            assert c.get(f"/entities/B{k}").status_code == (404 if k == 3 else 200)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_read_current_applies_what_the_log_holds_before_reading(kind: str, tmp_path: Path) -> None:
    """read_current answers with history holding every committed change, and reads once when it already does."""
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'b.db'}", None
    else:
        schema = schema_name("test_rc")
        url = f"{services.require_postgres()}?schema={schema}"

    async def body() -> None:
        store = open_store(url)
        await store.open()
        history = open_history(store)
        await history.open()
        try:
            recorder = HistoryRecorder(store, history)  # not started: nothing applies the log in the background
            eid = "urn:ngsi-ld:Thing:rc1"
            at = "2026-01-01T01:00:00.000Z"
            await store.insert("", [{"id": eid, "type": ["urn:T"],
                                     "urn:no2": [{"type": "Property", "value": 1, "observedAt": at, "modifiedAt": at}]}], at)
            reads = 0

            async def read() -> list[str]:
                nonlocal reads
                reads += 1
                return [r.entity_id for r in await history.entities("", ids=[eid])]

            assert await recorder.read_current(read) == [eid]
            assert reads == 2  # the first read ran before the change was applied: read again
            assert recorder.cursor == await store.last_change_seq()
            assert await recorder.read_current(read) == [eid]
            assert reads == 3  # current: the read that ran with the check stands
        finally:
            await history.close()
            await store.close()
            if schema is not None:
                await adrop_schema(schema)

    asyncio.run(body())


def test_concurrent_notifications_of_one_entity_keep_every_type(broker_url: str) -> None:
    """Eight clients notify the same entity, each under a type of its own, at once: history keeps all eight types.

    The types a notification adds are merged with the stored ones in the transaction that writes them; read
    before it, two notifications that both read the same stored types each wrote their own list, and the
    later one dropped the other's type."""
    tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
    eid = "urn:ngsi-ld:Shared:many"
    clients, rounds = 8, 6
    failures: list[str] = []
    start = threading.Barrier(clients)

    def post(k: int) -> None:
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=60) as c:
            start.wait()
            for j in range(rounds):
                r = c.post("/notify", json={"data": [_measure(eid, j * clients + k, etype=f"Kind{k}")]})
                if r.status_code != 200:
                    failures.append(r.text)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
        found = [c.get(f"/entities/{eid}", params={"type": f"Kind{k}"}).status_code for k in range(clients)]
        assert found == [200] * clients
        no2 = c.get(f"/entities/{eid}/attrs/no2", params={"type": "Kind0"}).json()
        assert len(no2["values"]) == clients * rounds  # every instance once


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_write_added_writes_only_when_history_holds_the_log(kind: str, tmp_path: Path) -> None:
    """HistoryStorage.write_added: behind the change log it writes nothing and says so; current, it writes the
    rows, adds the types to the stored ones (an entity given twice adding up), clears deletedAt and sets the
    service paths, in one transaction; a row given twice is stored once."""
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'b.db'}", None
    else:
        schema = schema_name("test_wa")
        url = f"{services.require_postgres()}?schema={schema}"

    async def body() -> None:
        store = open_store(url)
        await store.open()
        history = open_history(store)
        await history.open()
        try:
            recorder = HistoryRecorder(store, history)  # not started: nothing applies the log in the background
            eid, other = "urn:ngsi-ld:Thing:wa1", "urn:ngsi-ld:Thing:wa2"
            at = "2026-01-01T01:00:00.000Z"
            await store.insert("", [{"id": eid, "type": ["urn:T"],
                                     "urn:no2": [{"type": "Property", "value": 1, "observedAt": at, "modifiedAt": at}]}], at)
            entity = {"id": eid, "type": "U", "no2": {"type": "Property", "value": 2.5, "observedAt": "2026-01-01T02:00:00Z"}}
            ctx = ContextResolver().resolve(SDM_ALL_CONTEXT_URL)
            p = ingest.prepare("", eid, entity, ctx)
            q = ingest.prepare("", other, {**entity, "id": other, "type": "V"}, ctx)
            added = [(eid, p.types), (other, q.types), (eid, ["urn:W", *p.types])]
            rows = [*p.rows, *q.rows, *p.rows]
            paths = {eid: "/a", other: "/b"}
            assert not await history.write_added("", added, rows, paths, current=recorder.name)
            assert await history.entities("") == []  # nothing written, the store's entity not recorded yet
            await recorder.catch_up()
            assert await history.write_added("", added, rows, paths, current=recorder.name)
            found = {r.entity_id: (r.types, r.deleted_us) for r in await history.entities("")}
            assert found == {eid: (["urn:T", *p.types, "urn:W"], None), other: (q.types, None)}
            assert await history.service_paths("") == paths
            hits = await history.instances("", [eid, other], None, TimeRange(), 100, False)
            assert sorted((h.entity_id, h.attr, h.time_us) for h in hits) == sorted(
                [(eid, "urn:no2", to_us(at))] + [(r.entity_id, r.attr, r.key_us) for r in [*p.rows, *q.rows]])
            assert await store.delete("", [eid]) == [eid]
            await recorder.catch_up()
            deleted = await history.entity("", eid)
            assert deleted is not None and deleted.deleted_us is not None
            assert await history.write_added("", [(eid, ["urn:X", deleted.types[0]])], [], {other: "/c"})  # a path of another: ignored
            assert await history.entity("", eid) == EntityRow("", eid, [*deleted.types, "urn:X"], None)
            assert await history.service_paths("") == paths
            await history.delete_entity("", other)
            assert await history.write_added("", [(other, ["urn:X"])], [], {other: "/c"})
            assert await history.entity("", other) == EntityRow("", other, ["urn:X"], None)
            assert (await history.service_paths(""))[other] == "/c"
        finally:
            await history.close()
            await store.close()
            if schema is not None:
                await adrop_schema(schema)

    asyncio.run(body())


def test_a_notification_the_database_refuses_fails_alone_among_concurrent_ones(broker_url: str) -> None:
    """Eight clients at once, one notification holding what the database refuses (PostgreSQL: a NUL character in
    text): it answers as it answers when sent alone, and the seven others are stored (on PostgreSQL concurrent
    notifications are written together, a failed group again one by one)."""
    bad = {"data": [{**_measure("Nul0", 0), "note": {"type": "Text", "value": "a\u0000b"}}]}
    alone_tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": alone_tenant}, timeout=60) as c:
        alone = c.post("/notify", json=bad)
    tenant = f"t{new_id('x')[-12:].replace(':', '')}".lower()
    results: dict[int, httpx.Response] = {}
    start = threading.Barrier(8)

    def post(k: int) -> None:
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=60) as c:
            start.wait()
            for j in range(4):
                body = bad if (k, j) == (3, 1) else {"data": [_measure(f"N{k}", j)]}
                r = c.post("/notify", json=body)
                if (k, j) == (3, 1) or r.status_code != 200:
                    results[k * 10 + j] = r

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(results) == [31]
    assert (results[31].status_code, results[31].json() if alone.status_code != 200 else results[31].text) == (
        alone.status_code, alone.json() if alone.status_code != 200 else alone.text)
    with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
        for k in range(8):
            assert len(c.get(f"/entities/N{k}/attrs/no2").json()["values"]) == (3 if k == 3 else 4)


def test_concurrent_notifications_of_several_tenants_stay_in_their_tenant(broker_url: str) -> None:
    """Eight clients at once, each its own tenant (PostgreSQL writes the notifications that arrive together in
    one statement per run of one tenant): every tenant holds its own entities, no other's."""
    tenants = [f"t{new_id('x')[-12:].replace(':', '')}{k}".lower() for k in range(8)]
    failures: list[str] = []
    start = threading.Barrier(8)

    def post(k: int) -> None:
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenants[k]}, timeout=60) as c:
            start.wait()
            for j in range(6):
                r = c.post("/notify", json={"data": [_measure(f"E{k}", j), _measure("Common", j)]})
                if r.status_code != 200:
                    failures.append(r.text)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    for k, tenant in enumerate(tenants):
        with httpx.Client(base_url=broker_url + "/v2", headers={"Fiware-Service": tenant}, timeout=30) as c:
            found = sorted(e["entityId"] for e in c.get("/entities").json())
            assert found == sorted([f"E{k}", "Common"])
            assert len(c.get("/entities/Common/attrs/no2").json()["values"]) == 6
