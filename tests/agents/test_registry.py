"""The registry on both stores: groups, devices, dead letters."""

from __future__ import annotations

import asyncio

import pytest

from agents.registry import DeadLetter, Duplicate, open_registry


def test_groups_devices_dead_letters(registry_url: str) -> None:
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            g = {"apikey": "k", "resource": "/iot/json", "entity_type": "Thing", "service": "s", "subservice": "/a"}
            await registry.create_groups("s", "/a", [g])
            with pytest.raises(Duplicate):
                await registry.create_groups("s", "/b", [g])
            assert (await registry.list_groups("s", None)).count == 1
            assert (await registry.list_groups("s", "/b")).count == 0
            assert await registry.groups_by_apikey("k") == [g]
            assert await registry.replace_group("s", "/a", "/iot/json", "k", {**g, "entity_type": "Other"})
            assert (await registry.get_group("s", "/a", "/iot/json", "k"))["entity_type"] == "Other"  # type: ignore[index]

            d = {"device_id": "d1", "service": "s", "service_path": "/a", "apikey": "k"}
            await registry.create_device(d)
            with pytest.raises(Duplicate):
                await registry.create_device(d)
            await registry.create_device({**d, "service_path": "/b"})
            assert len(await registry.devices_by_id("d1")) == 2
            assert (await registry.list_devices("s", "/a")).items == [d]
            assert await registry.replace_device({**d, "timezone": "Europe/Paris"})
            assert (await registry.get_device("s", "/a", "d1"))["timezone"] == "Europe/Paris"  # type: ignore[index]
            assert await registry.delete_device("s", "/a", "d1")
            assert not await registry.delete_device("s", "/a", "d1")
            assert await registry.delete_group("s", "/a", "/iot/json", "k")

            for i in range(3):
                await registry.add_dead_letter(DeadLetter(f"2026-11-26T07:0{i}:00Z", "wrong_type" if i else "unknown_apikey",
                                                          "detail", "mqtt", "json", "k", f"d{i}", "/k/d/attrs"))
            page = await registry.list_dead_letters(limit=2)
            assert page.count == 3 and [r["device_id"] for r in page.items] == ["d2", "d1"]
            assert (await registry.list_dead_letters(reason="wrong_type")).count == 2
            assert await registry.purge_dead_letters("2026-11-26T07:01:00Z") == 1
        finally:
            await registry.close()

    asyncio.run(main())


def test_unsupported_url() -> None:
    with pytest.raises(ValueError):
        open_registry("mysql://x")
