"""Ingest of good and bad southbound messages: updates, rejections (log, counter, dead letter), autoprovision."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agents.ingest import Ingestor
from agents.mapping.timestamps import shifted
from agents.messages import EntityUpdate, Inbound
from agents.metrics import Metrics
from agents.registry import Registry, open_registry
from agents.settings import DEFAULT_CONTEXTS, AgentSettings

AT = "2026-11-26T07:05:00Z"
GROUP = {"apikey": "k1", "resource": "/iot/json", "entity_type": "AirQualityObserved", "cbroker": "http://orion-ld:1026"}


def _msg(payload: bytes, *, protocol: str = "json", apikey: str = "k1", device: str = "aix-01",
         attribute: str | None = None) -> Inbound:
    topic = f"/{apikey}/{device}/attrs" + (f"/{attribute}" if attribute else "")
    return Inbound("mqtt", protocol, apikey, device, payload, AT, attribute=attribute, topic=topic)


def run(registry_url: str, body: Callable[[Ingestor, Registry, Metrics], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            metrics = Metrics()
            await body(Ingestor(registry, metrics, AgentSettings(**settings)), registry, metrics)
        finally:
            await registry.close()

    asyncio.run(main())


def test_json_measure_to_updates(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("aix", "/air", [{**GROUP, "service": "aix", "subservice": "/air"}])
        updates = await ingestor.ingest(_msg(b'{"no2": 41, "TimeInstant": "2026-11-26T07:00:00Z"}'))
        assert [u.entity["id"] for u in updates] == ["urn:ngsi-ld:AirQualityObserved:aix-01", "urn:ngsi-ld:Device:aix-01"]
        first = updates[0]
        assert isinstance(first, EntityUpdate)
        assert (first.tenant, first.service_path, first.broker_url) == ("aix", "/air", "http://orion-ld:1026")
        assert first.context == list(DEFAULT_CONTEXTS) and first.device_id == "aix-01" and first.apikey == "k1"
        assert first.entity["no2"]["observedAt"] == "2026-11-26T07:00:00Z"
        # autoprovisioned, as the FIWARE agents do
        device = await registry.get_device("aix", "/air", "aix-01")
        assert device is not None and device["entity_name"] == "urn:ngsi-ld:AirQualityObserved:aix-01"
        assert metrics.get("metropole_agent_messages_accepted_total").get(transport="mqtt", protocol="json") == 1  # type: ignore[union-attr]

    run(registry_url, body)


def test_multi_measure_and_ultralight(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("", "/", [{"apikey": "k1", "resource": "/iot/d", "entity_type": "Thing",
                                                "service": "", "subservice": "/"}])
        updates = await ingestor.ingest(_msg(b'[{"t": 1}, {"t": 2}]'))
        assert [u.entity["t"]["value"] for u in updates] == [1, 2]
        # measures of one message without TimeInstant stay distinct (and ordered) in history
        assert [u.entity["t"]["observedAt"] for u in updates] == [AT, shifted(AT, 1)]
        updates = await ingestor.ingest(_msg(b"2026-11-26T06:00:00Z|t|20#t|21", protocol="ul"))
        assert [u.entity["t"]["value"] for u in updates] == ["20", "21"]
        assert updates[0].entity["t"]["observedAt"] == "2026-11-26T06:00:00Z"
        assert updates[1].entity["t"]["observedAt"] == shifted(AT, 1)
        [single] = await ingestor.ingest(_msg(b"22.5", attribute="t"))
        assert single.entity["t"]["value"] == 22.5
        [one] = await ingestor.ingest(_msg(b'[{"t": 7}]'))
        assert "0" not in one.entity and one.entity["t"]["value"] == 7

    run(registry_url, body)


def test_provisioned_device_with_own_apikey_and_no_group(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_device({"device_id": "temperature001", "apikey": "solo", "service": "openiot",
                                      "service_path": "/", "entity_type": "Temperature",
                                      "entity_name": "urn:ngsi-ld:Temperature:001",
                                      "attributes": [{"object_id": "t", "name": "temperature", "type": "Integer"}]})
        [update] = await ingestor.ingest(_msg(b"t|23", protocol="ul", apikey="solo", device="temperature001"))
        assert update.entity == {"id": "urn:ngsi-ld:Temperature:001", "type": "Temperature",
                                 "temperature": {"type": "Property", "value": 23, "observedAt": AT}}
        assert update.tenant == "openiot" and update.broker_url is None

    run(registry_url, body)


BAD = [
    (b'{"no2": ', "json", "k1", "malformed_payload"),
    (b"t|1|h", "ul", "k1", "malformed_payload"),
    (b'{"no2": 1}', "json", "nobody", "unknown_apikey"),
    (b'{"no2": "high"}', "json", "k1", "wrong_type"),
]


@pytest.mark.parametrize(("payload", "protocol", "apikey", "reason"), BAD)
def test_bad_input_is_rejected_logged_counted_and_kept(
    registry_url: str, caplog: pytest.LogCaptureFixture, payload: bytes, protocol: str, apikey: str, reason: str
) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("aix", "/air", [{**GROUP, "service": "aix", "subservice": "/air"}])
        with caplog.at_level(logging.WARNING, logger="metropole.agents"):
            assert await ingestor.ingest(_msg(payload, protocol=protocol, apikey=apikey)) == []
        assert reason in caplog.text and "aix-01" in caplog.text and f"/{apikey}/aix-01/attrs" in caplog.text
        assert metrics.get("metropole_agent_messages_rejected_total").get(reason=reason) == 1  # type: ignore[union-attr]
        letters = await registry.list_dead_letters(reason=reason)
        assert letters.count == 1
        letter = letters.items[0]
        assert letter["device_id"] == "aix-01" and letter["topic"] == f"/{apikey}/aix-01/attrs"
        assert letter["payload"] == payload.decode()
        assert "metropole_agent_messages_rejected_total{reason=\"" + reason + "\"} 1" in metrics.render()

    run(registry_url, body)


def test_unknown_device_without_autoprovision_and_failing_expression(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("s", "/", [
            {"apikey": "closed", "resource": "/iot/json", "entity_type": "Thing", "autoprovision": False,
             "service": "s", "subservice": "/"},
            {"apikey": "expr", "resource": "/iot/json", "entity_type": "Thing", "service": "s", "subservice": "/",
             "attributes": [{"name": "x", "type": "Number", "expression": "t |nosuch"}]},
        ])
        assert await ingestor.ingest(_msg(b'{"t": 1}', apikey="closed")) == []
        assert await ingestor.ingest(_msg(b'{"t": 1}', apikey="expr")) == []
        reasons = {r["reason"] for r in (await registry.list_dead_letters()).items}
        assert reasons == {"unknown_device", "expression_failed"}

    run(registry_url, body)


def test_entity_name_expression_on_autoprovision(registry_url: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("s", "/", [{"apikey": "k1", "resource": "/iot/json", "entity_type": "Thing",
                                                 "entityNameExp": "'Thing:' + id + '-' + site", "service": "s",
                                                 "subservice": "/"}])
        [update] = await ingestor.ingest(_msg(b'{"site": "aix", "t": 1}', device="d7"))
        assert update.entity["id"] == "urn:ngsi-ld:Thing:d7-aix"

    run(registry_url, body)


@pytest.mark.parametrize("device", ["#", "+", "../../etc/passwd", "a/b", "with space", "nul\x00", "x" * 129, ".."])
def test_hostile_device_ids_are_not_autoprovisioned(registry_url: str, caplog: pytest.LogCaptureFixture,
                                                    device: str) -> None:
    # issue 17: `#`, `+` and `../../etc/passwd` were autoprovisioned as they were
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("aix", "/air", [{**GROUP, "service": "aix", "subservice": "/air"}])
        msg = Inbound("http", "json", "k1", device, b'{"no2": 1}', AT)
        with caplog.at_level(logging.WARNING, logger="metropole.agents"):
            assert await ingestor.ingest(msg) == []
        assert "invalid_device_id" in caplog.text and repr(device[:100])[1:-1][:20] in caplog.text
        assert metrics.get("metropole_agent_messages_rejected_total").get(reason="invalid_device_id") == 1  # type: ignore[union-attr]
        letters = await registry.list_dead_letters(reason="invalid_device_id")
        detail = letters.items[0]["detail"]
        assert letters.count == 1 and ("is not autoprovisioned" in detail or "NUL character" in detail)
        if "\x00" not in device:  # (PostgreSQL cannot even look that one up: refused before the registry)
            assert await registry.devices_by_id(device) == []

    run(registry_url, body)


@pytest.mark.parametrize("device", ["aix-01", "eui-70b3d57ed0012345", "sensor_7.b", "urn:dev:1", "a@b"])
def test_ordinary_device_ids_are_autoprovisioned(registry_url: str, device: str) -> None:
    async def body(ingestor: Ingestor, registry: Registry, metrics: Metrics) -> None:
        await registry.create_groups("aix", "/air", [{**GROUP, "service": "aix", "subservice": "/air"}])
        assert await ingestor.ingest(Inbound("http", "json", "k1", device, b'{"no2": 1}', AT)) != []
        assert await registry.get_device("aix", "/air", device) is not None

    run(registry_url, body)
