"""The limits of broker.limits read from METROPOLE_BROKER_* and enforced with their own small values,
on a broker of their own (SQLite: these checks are above the store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker import limits
from broker.limits import Limits
from broker.settings import BrokerSettings
from tests.broker.conftest import API, RunningBroker, free_port, new_id

SMALL = Limits(max_body_bytes=4096, max_batch_entities=3, max_id_bytes=64, max_depth=6, max_attributes=5,
               max_q_length=40, max_q_depth=3, max_pattern_length=10, max_geometry_points=5, max_subscriptions=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("limits")
    settings = BrokerSettings(host="127.0.0.1", port=free_port(), data_dir=data,
                              store_url=f"sqlite:///{Path(data) / 'broker.db'}", limits=SMALL)
    try:
        with RunningBroker(settings) as broker, httpx.Client(base_url=broker.url + API, timeout=30,
                                                              headers={"NGSILD-Tenant": "limits"}) as client:
            assert client.post("/entities", json={"id": new_id("L"), "type": "L"}).status_code == 201
            yield client
    finally:
        limits.configure(Limits())  # the limits are process-wide: the other brokers of this session had the defaults


def _refused(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/") and body["status"] == status
    return str(body["detail"])


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_BROKER_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("METROPOLE_BROKER_MAX_SUBSCRIPTIONS", "7")
    got = BrokerSettings.from_env().limits
    assert (got.max_body_bytes, got.max_subscriptions, got.max_depth) == (1000, 7, Limits().max_depth)
    monkeypatch.setenv("METROPOLE_BROKER_MAX_DEPTH", "deep")
    with pytest.raises(ValueError, match="METROPOLE_BROKER_MAX_DEPTH"):
        Limits.from_env()


def test_each_limit_at_its_bound(small: httpx.Client) -> None:
    entity = {"id": new_id("L"), "type": "L"}
    assert "4096" in _refused(small.post("/entities", content=json.dumps({**entity, "p": {
        "type": "Property", "value": "x" * 5000}}), headers={"Content-Type": "application/json"}), 413)
    assert "at most 3" in _refused(small.post("/entityOperations/upsert", json=[
        {"id": new_id("L"), "type": "L"} for _ in range(4)]))
    assert small.post("/entityOperations/upsert", json=[{"id": new_id("L"), "type": "L"} for _ in range(3)]
                      ).status_code in (201, 204)
    assert "64" in _refused(small.post("/entities", json={"id": "urn:ngsi-ld:L:" + "é" * 30, "type": "L"}))
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    assert "deep" in _refused(small.post("/entities", json={**entity, "p": {"type": "Property", "value": deep}}))
    assert "attributes" in _refused(small.post("/entities", json={**entity, **{
        f"a{i}": {"type": "Property", "value": i} for i in range(6)}}))
    assert "characters" in _refused(small.get("/entities", params={"type": "L", "q": "a==1;" * 9 + "a==1"}))
    assert "nested" in _refused(small.get("/entities", params={"type": "L", "q": "((((a==1))))"}))
    assert small.get("/entities", params={"type": "L", "q": "(((a==1)))"}).status_code == 200
    assert "at most 10" in _refused(small.get("/entities", params={"type": "L", "idPattern": "urn:ngsi-ld:.*"}))
    geo = {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[5.0 + i * 0.01, 43.0]
                                                                                for i in range(6)]}}
    assert "positions" in _refused(small.post("/entities", json={**entity, "location": geo}))
    geo["value"]["coordinates"] = geo["value"]["coordinates"][:5]  # type: ignore[index]
    assert small.post("/entities", json={**entity, "location": geo}).status_code == 201
    ring = [[5.0 + i * 0.01, 43.0] for i in range(5)] + [[5.0, 43.0]]
    assert "positions" in _refused(small.get("/entities", params={
        "type": "L", "georel": "within", "geometry": "Polygon", "coordinates": json.dumps([ring])}))
    sub = {"type": "Subscription", "entities": [{"type": "L"}], "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}
    assert small.post("/subscriptions", json=sub).status_code == 201
    assert small.post("/subscriptions", json=sub).status_code == 201
    assert "METROPOLE_BROKER_MAX_SUBSCRIPTIONS" in _refused(small.post("/subscriptions", json=sub))
