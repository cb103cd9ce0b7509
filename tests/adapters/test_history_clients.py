"""The QuantumLeap client and the NGSI-LD temporal client against the real embedded broker, over HTTP.

What they must show: for the same entity and attribute both return the
same series (times and values), whether the history came from the NGSI-LD
API, the temporal API or a QuantumLeap notification, including a series
longer than one page of the temporal API (206 + Content-Range followed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.quantumleap import QuantumLeapClient, QuantumLeapError, QuantumLeapNotFound
from adapters.temporal import TemporalClient, TemporalError, merge_entity, parse_content_range
from broker.settings import BrokerSettings
from tests.broker.conftest import RunningBroker, free_port

SDM = "https://smartdatamodels.org/context.jsonld"
LINK = {"Link": f'<{SDM}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("history-clients")
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data, store_url=f"sqlite:///{data / 'b.db'}",
                              temporal_limit=1000)  # pages of 1,000 instances, so 1,500 take two
    with RunningBroker(settings) as broker:
        yield broker.url


@pytest.fixture
def tenant() -> str:
    return f"h{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ql(broker_url: str, tenant: str) -> QuantumLeapClient:
    return QuantumLeapClient(broker_url, service=tenant, service_path="/")


@pytest.fixture
def tc(broker_url: str, tenant: str) -> Iterator[TemporalClient]:
    with TemporalClient(broker_url, tenant=tenant, context=SDM) as client:
        yield client


def at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def same(series: list[tuple[str, Any]]) -> list[tuple[datetime, Any]]:
    return [(datetime.fromisoformat(t), v) for t, v in series]


def test_same_series_from_the_context_api(broker_url: str, tenant: str, ql: QuantumLeapClient, tc: TemporalClient) -> None:
    eid = f"urn:ngsi-ld:WeatherObserved:{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant, **LINK}) as ld:
        r = ld.post("/entities", json={"id": eid, "type": "WeatherObserved",
                                       "temperature": {"type": "Property", "value": 10.5, "observedAt": at(0)}})
        assert r.status_code == 201, r.text
        for i in range(1, 6):
            r = ld.patch(f"/entities/{eid}/attrs", json={"temperature": {"type": "Property", "value": 10.5 + i, "observedAt": at(i)}})
            assert r.status_code == 204, r.text
    ql_series = ql.series(eid, "temperature")
    assert [v for _, v in ql_series] == [10.5, 11.5, 12.5, 13.5, 14.5, 15.5]
    assert same(ql_series) == same(tc.series(eid, "temperature"))
    assert same(ql.series(eid, "temperature", last_n=2)) == same(tc.series(eid, "temperature", last_n=2))
    window_ql = ql.series(eid, "temperature", from_date=at(1), to_date=at(3))
    window_ld = tc.series(eid, "temperature", timerel="between", time_at=at(1), end_time_at=at(4))
    assert len(window_ql) == 3 and same(window_ql) == same(window_ld)
    body = ql.entity_attr(eid, "temperature", last_n=1)
    assert body["entityId"] == eid and body["entityType"] == "WeatherObserved" and body["values"] == [15.5]


def test_same_long_series_across_temporal_pages(broker_url: str, tenant: str, ql: QuantumLeapClient, tc: TemporalClient) -> None:
    eid = f"urn:ngsi-ld:AirQualityObserved:{uuid.uuid4().hex[:8]}"
    n = 1500  # more than one page (1000 instances) of the temporal API
    instances = [{"type": "Property", "value": float(i % 97), "observedAt": at(i)} for i in range(n)]
    with httpx.Client(base_url=broker_url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant, **LINK}, timeout=60) as ld:
        r = ld.post("/temporal/entities", json={"id": eid, "type": "AirQualityObserved", "no2": instances})
        assert r.status_code == 201, r.text
        first = ld.get(f"/temporal/entities/{eid}", params={"options": "temporalValues"})
        assert first.status_code == 206 and parse_content_range(first.headers["Content-Range"]) is not None
    ql_series = ql.series(eid, "no2")
    ld_series = tc.series(eid, "no2")
    assert len(ql_series) == n
    assert same(ql_series) == same(ld_series)
    assert same(ql.series(eid, "no2", last_n=1200)) == same(tc.series(eid, "no2", last_n=1200))
    normalized = tc.entity(eid, attrs=["no2"], temporal_values=False)
    assert [i["value"] for i in normalized["no2"]] == [i["value"] for i in instances]
    hourly = ql.entity_attr(eid, "no2", aggr_method="count", aggr_period="hour")
    assert sum(hourly["values"]) == n and len(hourly["index"]) == 25


def test_same_series_from_a_quantumleap_notification(ql: QuantumLeapClient, tc: TemporalClient) -> None:
    for i in range(4):
        meta = {"TimeInstant": {"type": "DateTime", "value": at(i)}}
        ack = ql.notify([{"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 20 + i, "metadata": meta}}])
        assert ack == "Notification successfully processed"
    ql_series = ql.series("Room1", "temperature")
    assert [v for _, v in ql_series] == [20, 21, 22, 23]
    assert same(ql_series) == same(tc.series("urn:ngsi-v2:Room:Room1", "temperature"))
    assert ql.type_attr("Room", "temperature", last_n=1)["entities"] == [
        {"entityId": "Room1", "index": [at(3).replace("Z", ".000+00:00")], "values": [23]}]
    assert ql.attr("temperature")["types"][0]["entityType"] == "Room"
    assert ql.entity("Room1")["attributes"][0]["attrName"] == "temperature"
    assert ql.entities(type_="Room") == [{"entityId": "Room1", "entityType": "Room", "index": at(3).replace("Z", ".000+00:00")}]
    assert [e["id"] for e in tc.query(type="Room", attrs=["temperature"])] == ["urn:ngsi-v2:Room:Room1"]


def test_errors_and_empty_series(ql: QuantumLeapClient, tc: TemporalClient) -> None:
    assert ql.series("urn:ngsi-ld:Nothing:1", "temperature") == []
    assert tc.series("urn:ngsi-ld:Nothing:1", "temperature") == []
    with pytest.raises(QuantumLeapNotFound) as nf:
        ql.entity("urn:ngsi-ld:Nothing:1")
    assert nf.value.description == "No records were found for such query."
    with pytest.raises(QuantumLeapError) as bad:
        ql.entity_attr("Room1", "temperature", aggr_period="hour")
    assert bad.value.status == 400
    with pytest.raises(TemporalError) as err:
        tc.entity("not a uri")
    assert err.value.status == 400


def test_merge_entity_orders_pages() -> None:
    merged: dict[str, Any] = {}
    merge_entity(merged, {"id": "x", "a": {"type": "Property", "values": [[3, "t3"]]}}, prepend=False)
    merge_entity(merged, {"id": "x", "a": {"type": "Property", "values": [[1, "t1"], [2, "t2"]]}}, prepend=True)
    merge_entity(merged, {"id": "x", "b": [{"value": 1}, {"value": 2}]}, prepend=False)
    merge_entity(merged, {"id": "x", "b": [{"value": 0}]}, prepend=True)
    assert merged["a"] == [{"type": "Property", "values": [[1, "t1"], [2, "t2"], [3, "t3"]]}]
    assert merged["b"] == [{"value": 0}, {"value": 1}, {"value": 2}]
    assert parse_content_range("DateTime 2026-01-01T00:00:00.000Z-2026-01-02T00:00:00.000Z/*") == (
        "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "*")


def test_client_deletes_lists_and_subscribes(broker_url: str, ql: QuantumLeapClient) -> None:
    """The client's resource list, /attrs, deletes and subscribe against the platform's /v2 (QuantumLeap 1.0.0 delete.py, api.py)."""
    assert ql.resources()["entities_url"] == "/v2/entities"
    ql.notify([{"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 21},
                "TimeInstant": {"type": "DateTime", "value": at(0)}}])
    ql.notify([{"id": "Room1", "type": "Room", "temperature": {"type": "Number", "value": 22},
                "TimeInstant": {"type": "DateTime", "value": at(5)}}])
    assert [a["attrName"] for a in ql.attrs()["attrs"]] == ["TimeInstant", "temperature"]
    ql.delete_entity("Room1", to_date=at(0))
    assert [v for _, v in ql.series("Room1", "temperature")] == [22.0]
    with pytest.raises(QuantumLeapNotFound):
        ql.delete_entity("Room1", to_date=at(0))
    ql.delete_type("Room", drop_table=True)
    assert ql.series("Room1", "temperature") == []
    created = ql.subscribe(entity_type="Room", attributes="temperature", quantumleap_url=broker_url + "/v2")
    assert created.status_code == 201 and created.headers["Location"].startswith("/ngsi-ld/v1/subscriptions/")
