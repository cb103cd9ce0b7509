"""The ingestor's cache of device configurations: hits skip the registry, provisioning writes drop it.

The provisioning API and the ingestor share one registry object (as in
`agents/runtime.py`); every group or device write through it must be seen by
the next message, with no stale configuration served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from agents.ingest import Ingestor
from agents.messages import Inbound
from agents.metrics import Metrics
from agents.provisioning.app import create_provisioning_app
from agents.registry import Registry, open_registry
from agents.settings import AgentSettings

AT = "2026-11-26T07:05:00Z"
HEADERS = {"fiware-service": "aix", "fiware-servicepath": "/air"}
GROUP = {"apikey": "k1", "resource": "/iot/json", "entity_type": "AirQualityObserved", "cbroker": "http://one:1026"}


def _msg(device: str = "aix-01", apikey: str = "k1", value: int = 41) -> Inbound:
    return Inbound("mqtt", "json", apikey, device, b'{"no2": %d}' % value, AT, topic=f"/{apikey}/{device}/attrs")


class Counting:
    """Counts the southbound lookups that reach the registry."""

    def __init__(self, registry: Registry) -> None:
        self.lookups = 0
        for name in ("groups_by_apikey", "devices_by_id"):
            original = getattr(registry, name)

            async def counted(*args: Any, _original: Any = original) -> Any:
                self.lookups += 1
                return await _original(*args)

            setattr(registry, name, counted)


Body = Callable[[Ingestor, httpx.AsyncClient, Counting], Awaitable[None]]


def run(registry_url: str, body: Body, **ingestor: Any) -> None:
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            settings = AgentSettings()
            metrics = Metrics()
            app = create_provisioning_app(settings, registry, metrics)
            counting = Counting(registry)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://iota", headers=HEADERS) as api:
                await body(Ingestor(registry, metrics, settings, **ingestor), api, counting)
        finally:
            await registry.close()

    asyncio.run(main())


def test_known_device_is_looked_up_once(registry_url: str) -> None:
    async def body(ingestor: Ingestor, api: httpx.AsyncClient, counting: Counting) -> None:
        assert (await api.post("/iot/services", json={"services": [GROUP]})).status_code == 201
        await ingestor.ingest(_msg())  # autoprovisions: not cached (the device is read back next time)
        await ingestor.ingest(_msg(value=42))
        lookups = counting.lookups
        for value in range(10):
            [main, _device] = await ingestor.ingest(_msg(value=value))
            assert main.entity["no2"]["value"] == value and main.broker_url == "http://one:1026"
        assert counting.lookups == lookups  # served from the cache

    run(registry_url, body)


def test_group_and_device_writes_through_the_api_are_seen_at_once(registry_url: str) -> None:
    async def body(ingestor: Ingestor, api: httpx.AsyncClient, counting: Counting) -> None:
        assert (await api.post("/iot/services", json={"services": [GROUP]})).status_code == 201
        r = await api.post("/iot/devices", json={"devices": [{
            "device_id": "aix-01", "entity_name": "urn:ngsi-ld:AirQualityObserved:first",
            "entity_type": "AirQualityObserved"}]})
        assert r.status_code == 201, r.text
        for _ in range(2):
            [main, _d] = await ingestor.ingest(_msg())
            assert main.entity["id"] == "urn:ngsi-ld:AirQualityObserved:first"

        # device update: the new entity name applies to the very next message
        r = await api.put("/iot/devices/aix-01", json={"entity_name": "urn:ngsi-ld:AirQualityObserved:second"})
        assert r.status_code == 204, r.text
        [main, _d] = await ingestor.ingest(_msg())
        assert main.entity["id"] == "urn:ngsi-ld:AirQualityObserved:second"

        # group update: the new broker applies at once
        r = await api.put("/iot/services", params={"resource": "/iot/json", "apikey": "k1"},
                          json={"cbroker": "http://two:1026"})
        assert r.status_code == 204, r.text
        [main, _d] = await ingestor.ingest(_msg())
        assert main.broker_url == "http://two:1026"

        # device deleted and the group no longer autoprovisions: rejected, not served from the cache
        r = await api.put("/iot/services", params={"resource": "/iot/json", "apikey": "k1"},
                          json={"autoprovision": False})
        assert r.status_code == 204, r.text
        [main, _d] = await ingestor.ingest(_msg())  # cached again
        assert (await api.delete("/iot/devices/aix-01")).status_code == 204
        assert await ingestor.ingest(_msg()) == []

        # group deleted: unknown apikey
        assert (await api.delete("/iot/services", params={"resource": "/iot/json", "apikey": "k1"})).status_code == 204
        assert await ingestor.ingest(_msg(device="aix-02")) == []
        assert await ingestor.ingest(_msg()) == []
        rejected = ingestor.rejected
        assert rejected.get(reason="unknown_device") == 1 and rejected.get(reason="unknown_apikey") == 2

    run(registry_url, body)


def test_write_during_lookup_is_not_cached(registry_url: str) -> None:
    """A configuration read while a write lands is used once, never kept."""

    async def body(ingestor: Ingestor, api: httpx.AsyncClient, counting: Counting) -> None:
        assert (await api.post("/iot/services", json={"services": [GROUP]})).status_code == 201
        await ingestor.ingest(_msg())  # autoprovisioned
        registry = ingestor.registry
        original = registry.devices_by_id

        async def racing(device_id: str) -> Any:
            found = await original(device_id)
            # the provisioning API changes the device between the read and the caching
            r = await api.put("/iot/devices/aix-01", json={"entity_name": "urn:ngsi-ld:AirQualityObserved:new"})
            assert r.status_code == 204, r.text
            return found

        registry.devices_by_id = racing  # type: ignore[method-assign]
        [main, _d] = await ingestor.ingest(_msg())
        assert main.entity["id"] == "urn:ngsi-ld:AirQualityObserved:aix-01"  # what was read
        registry.devices_by_id = original  # type: ignore[method-assign]
        [main, _d] = await ingestor.ingest(_msg())
        assert main.entity["id"] == "urn:ngsi-ld:AirQualityObserved:new"

    run(registry_url, body)


def test_entries_expire(registry_url: str) -> None:
    """Writes by another process are not seen by the generation: the time limit bounds their staleness."""

    async def body(ingestor: Ingestor, api: httpx.AsyncClient, counting: Counting) -> None:
        assert (await api.post("/iot/services", json={"services": [GROUP]})).status_code == 201
        await ingestor.ingest(_msg())
        lookups = counting.lookups
        await ingestor.ingest(_msg())
        await ingestor.ingest(_msg())
        assert counting.lookups == lookups + 4  # ttl 0: every message reads the registry

    run(registry_url, body, config_ttl=0.0)


def test_generation_counts_every_write(registry_url: str) -> None:
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            seen = [registry.generation]

            def bumped() -> None:
                assert registry.generation > seen[-1]
                seen.append(registry.generation)

            await registry.create_groups("s", "/", [{**GROUP, "service": "s", "subservice": "/"}])
            bumped()
            await registry.replace_group("s", "/", "/iot/json", "k1", {**GROUP, "entity_type": "X"})
            bumped()
            await registry.create_device({"device_id": "d", "service": "s", "service_path": "/", "apikey": "k1"})
            bumped()
            await registry.replace_device({"device_id": "d", "service": "s", "service_path": "/", "apikey": "k2"})
            bumped()
            await registry.delete_device("s", "/", "d")
            bumped()
            await registry.delete_group("s", "/", "/iot/json", "k1")
            bumped()
            await registry.groups_by_apikey("k1")
            await registry.devices_by_id("d")
            assert registry.generation == seen[-1]  # reads do not count
        finally:
            await registry.close()

    asyncio.run(main())
