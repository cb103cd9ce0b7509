"""SQLite history: an entity's temporal_entities row is written only where that changes it (issue 16, sqlhist20).

A recorder step (apply: a PATCH) and a notification of a known entity (write_added) rewrote the row with the
same types, no deletion and the same service path; a new type, a deletion, a re-creation, another path are
still written, and the temporal API's entity reads stay the same.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import TimeRange

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "ents"
E = "urn:e:0"


def _row(second: int) -> Any:
    inst = {"type": "Property", "value": second, "observedAt": from_us(T0 + second * 1_000_000)}
    return value_row(TENANT, E, "https://x/a", inst, 0)


def _count_updates(path: Path) -> None:
    """An UPDATE trigger on temporal_entities counting the rows an upsert or UPDATE writes."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ent_writes (n INTEGER NOT NULL)")
        conn.execute("INSERT INTO ent_writes VALUES (0)")
        conn.execute("CREATE TRIGGER ent_written AFTER UPDATE ON temporal_entities BEGIN"
                     " UPDATE ent_writes SET n = n + 1; END")


def _writes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT n FROM ent_writes").fetchone()[0])


def _stored(path: Path) -> tuple[Any, ...]:
    with sqlite3.connect(path) as conn:
        return tuple(conn.execute("SELECT types, deleted_us, service_path FROM temporal_entities"
                                  " WHERE entity_id = ?", (E,)).fetchone())


def test_a_notification_of_a_known_entity_leaves_its_row_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            assert await history.write_added(TENANT, [(E, ["https://x/T"])], [_row(1)], {E: "/a"})
            _count_updates(path)
            # the same types (or none), the same path or none: not written
            assert await history.write_added(TENANT, [(E, ["https://x/T"])], [_row(2)], {E: "/a"})
            assert await history.write_added(TENANT, [(E, [])], [_row(3)], {})
            assert _writes(path) == 0
            assert _stored(path) == ('["https://x/T"]', None, "/a")
            # a new type, another path, a deleted entity notified again: written
            assert await history.write_added(TENANT, [(E, ["https://x/U"])], [_row(4)], {})
            assert _stored(path) == ('["https://x/T","https://x/U"]', None, "/a")
            assert await history.write_added(TENANT, [(E, ["https://x/T"])], [_row(5)], {E: "/b"})
            assert _stored(path) == ('["https://x/T","https://x/U"]', None, "/b")
            await history.write([EntityRow(TENANT, E, ["https://x/T"], T0)], [])
            assert _stored(path)[:2] == ('["https://x/T"]', T0)
            assert await history.write_added(TENANT, [(E, ["https://x/T"])], [_row(6)], {})
            assert _stored(path)[:2] == ('["https://x/T"]', None)
            assert _writes(path) == 4
            assert await history.entity(TENANT, E) == EntityRow(TENANT, E, ["https://x/T"], None)
            # instanceIds from the counter: 1, 2, ... as before
            assert [h.iid for h in await history.instances(TENANT, [E], None, TimeRange(), 100, False)] == [1, 2, 3, 4, 5, 6]
        finally:
            await history.close()

    asyncio.run(run())


def test_a_recorder_step_rewrites_the_row_only_where_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            await history.apply("rec", 1, [EntityRow(TENANT, E, ["https://x/T"], None)], [_row(1)])
            _count_updates(path)
            # PATCH steps: the same types, or none given (kept), no deletion: not written
            await history.apply("rec", 2, [EntityRow(TENANT, E, ["https://x/T"], None)], [_row(2)])
            await history.apply("rec", 3, [EntityRow(TENANT, E, [], None)], [_row(3)])
            assert _writes(path) == 0
            # types changed, deleted, deleted again later (a new time), re-created: each written, read the same
            await history.apply("rec", 4, [EntityRow(TENANT, E, ["https://x/U"], None)], [_row(4)])
            assert await history.entity(TENANT, E) == EntityRow(TENANT, E, ["https://x/U"], None)
            await history.apply("rec", 5, [EntityRow(TENANT, E, ["https://x/U"], T0 + 5)], [])
            assert await history.entity(TENANT, E) == EntityRow(TENANT, E, ["https://x/U"], T0 + 5)
            await history.apply("rec", 6, [EntityRow(TENANT, E, ["https://x/U"], T0 + 5)], [])  # replayed: not written
            await history.apply("rec", 7, [EntityRow(TENANT, E, [], T0 + 7)], [])
            assert await history.entity(TENANT, E) == EntityRow(TENANT, E, ["https://x/U"], T0 + 7)
            await history.apply("rec", 8, [EntityRow(TENANT, E, ["https://x/U"], None)], [_row(8)])
            assert await history.entity(TENANT, E) == EntityRow(TENANT, E, ["https://x/U"], None)
            assert _writes(path) == 4
            assert [e.entity_id for e in await history.entities(TENANT, types_any=["https://x/U"])] == [E]
            assert await history.entities(TENANT, types_any=["https://x/T"]) == []
            assert await history.load_cursor("rec") == 8
        finally:
            await history.close()

    asyncio.run(run())
