"""SQLite history: a small /v2/notify write runs on the event loop's thread when the file's writer is free
(SQLiteHistory.write_added with SQLiteThread.tx's `inline`; issue 16, sqlnotify23). Real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from broker.temporal import sqlite as history_sqlite
from broker.temporal.model import from_us, to_us, value_row
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import TimeRange

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "inl"


def _rows(eid: str, second: int, attrs: int) -> list[Any]:
    inst = {"type": "Property", "value": second, "observedAt": from_us(T0 + second * 1_000_000)}
    return [value_row(TENANT, eid, f"https://x/a{k}", inst, 0) for k in range(attrs)]


async def _idle(history: SQLiteHistory) -> None:
    writer = history._db.writer
    for _ in range(500):
        if not writer._draining and not writer._using.locked():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never went idle")


def test_a_small_notification_is_written_inline_a_large_one_on_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.db"

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        writer = history._db.writer
        try:
            await _idle(history)
            assert await history.write_added(
                TENANT, [("urn:e:1", ["https://x/T"])], _rows("urn:e:1", 1, 6), {"urn:e:1": "/a"}
            )
            assert writer.inline_jobs == 1
            # committed when answered: another connection sees the rows, the entity and its path
            with sqlite3.connect(path) as other:
                assert other.execute(
                    "SELECT service_path FROM temporal_entities WHERE entity_id = 'urn:e:1'"
                ).fetchone() == ("/a",)
            await _idle(history)
            big = [(f"urn:e:{n}", ["https://x/T"]) for n in range(10, 21)]  # 11 entities x 6 rows: past INLINE_ROWS
            rows = [r for eid, _ in big for r in _rows(eid, 2, 6)]
            assert len(rows) > history_sqlite.INLINE_ROWS
            assert await history.write_added(TENANT, big, rows, {})
            assert writer.inline_jobs == 1
            got = await history.instances(TENANT, ["urn:e:1", "urn:e:10"], None, TimeRange(), 100, False)
            assert len(got) == 12
        finally:
            await history.close()

    asyncio.run(run())
