"""The history recorder stores a batch of the change log a slice at a time, each with its cursor, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.store import open_store
from broker.temporal.model import EntityRow, HistoryRow
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.runtime import open_history
from broker.temporal.storage import TimeRange
from tests import services
from tests.pg import adrop_schema, schema_name

ATTR = "urn:no2"


def at(second: int) -> str:
    return f"2026-11-26T06:00:{second:02d}Z"


def reading(n: int) -> dict[str, Any]:
    return {"type": "Property", "value": n, "observedAt": at(n), "modifiedAt": at(n)}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_batch_is_stored_a_slice_at_a_time_each_with_its_cursor(kind: str, tmp_path: Path) -> None:
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'b.db'}", None
    else:
        schema = schema_name("test_slices")
        url = f"{services.require_postgres()}?schema={schema}"

    async def body() -> None:
        store = open_store(url)
        await store.open()
        history = open_history(store)
        await history.open()
        applied: list[tuple[int, int, int]] = []  # (seq given, changes, cursor saved before this apply)
        real = history.apply

        async def apply(consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
            applied.append((seq, len(entities), await history.load_cursor(consumer)))
            await real(consumer, seq, entities, rows)

        history.apply = apply  # type: ignore[method-assign]
        try:
            eid = "urn:ngsi-ld:Thing:s1"
            await store.insert("", [{"id": eid, "type": ["urn:T"], ATTR: [reading(0)]}], at(0))
            for n in range(1, 12):
                await store.upsert_replace("", [{"id": eid, "type": ["urn:T"], ATTR: [reading(n)]}], at(n))
            seqs = [r.seq for r in await store.changes_after(0, 100)]
            assert len(seqs) == 12
            recorder = HistoryRecorder(store, history, batch=10, per_write=4)
            assert await recorder.step() == 10
            # 10 changes in slices of 4, 4 and 2: each written with the seq of its last change, after the one before
            assert applied == [(seqs[3], 4, 0), (seqs[7], 4, seqs[3]), (seqs[9], 2, seqs[7])]
            assert recorder.cursor == seqs[9] == await history.load_cursor("temporal")
            await recorder.catch_up()
            assert recorder.cursor == seqs[-1] == await history.load_cursor("temporal")
            hits = await history.instances("", [eid], None, TimeRange(), 100, False)
            assert [orjson.loads(h.instance)["value"] for h in hits] == list(range(12))
        finally:
            await history.close()
            await store.close()
            if schema is not None:
                await adrop_schema(schema)

    asyncio.run(body())
