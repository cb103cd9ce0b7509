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


def test_pending_commands_and_scoped_dead_letters(registry_url: str) -> None:
    """What the command service and /iot/rejections keep, on both stores."""
    async def main() -> None:
        registry = open_registry(registry_url)
        await registry.open()
        try:
            await registry.put_command("s", "/", "d1", "reboot", {"delay": 5}, "PENDING", False, 100.0, 160.0)
            await registry.put_command("s", "/", "d1", "display", "62 dB", "PENDING", True, 101.0, 161.0)
            await registry.put_command("s", "/", "d1", "reboot", 1, "PENDING", False, 102.0, 162.0)  # replaces
            found = await registry.commands_of("s", "/", "d1")
            assert [(c["name"], c["value"], c["polling"]) for c in found] == [("display", "62 dB", True),
                                                                              ("reboot", 1, False)]
            assert await registry.set_command_status("s", "/", "d1", "display", "DELIVERED")
            assert [c["name"] for c in await registry.commands_of("s", "/", "d1", "PENDING")] == ["reboot"]
            assert await registry.expired_commands(161.5) == [
                {"service": "s", "subservice": "/", "device_id": "d1", "name": "display"}]
            assert await registry.remove_command("s", "/", "d1", "display")
            assert not await registry.remove_command("s", "/", "d1", "display")

            for service, path, attribute in (("s", "/", "t"), ("s", "/x", None), ("other", "/", None)):
                await registry.add_dead_letter(DeadLetter("2026-11-26T07:00:00Z", "wrong_type", "d", "http", "json",
                                                          "k", "d1", service=service, service_path=path,
                                                          attribute=attribute))
            assert (await registry.list_dead_letters(service="s", service_path=None)).count == 2
            mine = await registry.list_dead_letters(service="s", service_path="/")
            assert [r["attribute"] for r in mine.items] == ["t"]
            assert await registry.purge_dead_letters(service="s", service_path=None) == 2
            assert (await registry.list_dead_letters()).count == 1
        finally:
            await registry.close()

    asyncio.run(main())


def test_an_older_store_gains_the_attribute_column(tmp_path: object) -> None:
    """A SQLite registry created before dead letters named an attribute opens and takes them."""
    import sqlite3
    from pathlib import Path

    path = Path(str(tmp_path)) / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE agent_dead_letters (
            id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
            transport TEXT NOT NULL, protocol TEXT NOT NULL, apikey TEXT NOT NULL, device_id TEXT NOT NULL,
            topic TEXT, service TEXT NOT NULL, service_path TEXT NOT NULL, payload TEXT NOT NULL)""")

    async def main() -> None:
        registry = open_registry(f"sqlite:///{path}")
        await registry.open()
        try:
            await registry.add_dead_letter(DeadLetter("2026-11-26T07:00:00Z", "too_long", "d", attribute="note"))
            assert (await registry.list_dead_letters()).items[0]["attribute"] == "note"
        finally:
            await registry.close()

    asyncio.run(main())
