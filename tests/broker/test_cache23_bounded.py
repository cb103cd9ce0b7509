"""History stores' key caches bounded (issue 16, cache23): METROPOLE_BROKER_HISTORY_CACHE_ENTRIES.

SQLiteHistory keeps series key -> sid, entity -> eid and change shape -> id; PostgresHistory series key -> sid.
With a small bound, more series than it are written through the real write paths (write_added as /v2/notify,
apply and write as the recorder), each written again after its eviction: the caches stay within the bound,
every instance reads back with its value and its instanceId, no series row is made twice, the rollups equal
their recomputation. Real SQLite files and a real PostgreSQL (schema wt_cache23_*, dropped).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import CACHE_ENTRIES, HistoryStorage, TimeRange, cache_entries_from_env
from tests import services
from web.settings import SettingsError

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "cache23"
TYPES = ["https://x/T"]
ATTRS = ["https://x/a", "https://x/b", "https://x/c"]
ENTITIES = [f"urn:e:{n}" for n in range(40)]  # 40 x (3 attributes + 1 with a datasetId) = 160 series
BOUND = 50
_ORDER = "ORDER BY 1, 2, 3, 4, 5, 6"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _value(entity: str, attr: str, second: int) -> float:
    return ENTITIES.index(entity) * 1000 + ATTRS.index(attr) * 100 + second + 0.5  # a float: a change member


def _rows(entity: str, second: int) -> list[Any]:
    """An entity change: its three attributes at one time (a change row on SQLite), one with a datasetId."""
    at = from_us(T0 + second * 60_000_000)
    rows = [value_row(TENANT, entity, a, {"type": "Property", "value": _value(entity, a, second), "observedAt": at}, 0)
            for a in ATTRS]
    rows.append(value_row(TENANT, entity, ATTRS[0], {"type": "Property", "value": -_value(entity, ATTRS[0], second),
                                                      "observedAt": at, "datasetId": "urn:ds:1"}, 0))
    return rows


def _sizes(history: HistoryStorage) -> list[int]:
    if isinstance(history, SQLiteHistory):
        return [len(history._series), len(history._entities), len(history._shapes)]
    assert isinstance(history, PostgresHistory)
    return [len(history._series)]


async def _write_all(history: HistoryStorage, second: int) -> None:
    """Every entity written at `second`, a third by each path, the caches checked after each write."""
    for n, entity in enumerate(ENTITIES):
        rows = _rows(entity, second)
        if n % 3 == 0:
            assert await history.write_added(TENANT, [(entity, TYPES)], rows, {})
        elif n % 3 == 1:
            await history.apply("recorder", second * 100 + n, [EntityRow(TENANT, entity, TYPES)], rows)
        else:
            await history.write([EntityRow(TENANT, entity, TYPES)], rows)
        assert max(_sizes(history)) <= BOUND, _sizes(history)


async def _exercise(history: HistoryStorage) -> dict[tuple[str, str, str, int], int]:
    """Write, write again (the evicted series), rewrite the first minute with other values; check the instances."""
    await _write_all(history, 1)
    assert max(_sizes(history)) > 0  # a bound, not no cache
    await _write_all(history, 2)
    before = await _instances(history)
    # the first minute written again with the same values: the same instances, iids kept
    await _write_all(history, 1)
    assert await _instances(history) == before
    assert len(before) == len(ENTITIES) * 4 * 2
    for (entity, attr, dataset, second), (iid, value) in before.items():
        expected = _value(entity, attr, second)
        assert value == (-expected if dataset else expected)
    iids = [iid for iid, _ in before.values()]
    assert len(set(iids)) == len(iids)
    return {k: iid for k, (iid, _) in before.items()}


async def _instances(history: HistoryStorage) -> dict[tuple[str, str, str, int], tuple[int, Any]]:
    out: dict[tuple[str, str, str, int], tuple[int, Any]] = {}
    for dataset in ("", "urn:ds:1"):
        for hit in await history.instances(TENANT, ENTITIES, None, TimeRange(), 100, False, datasets=[dataset]):
            doc = orjson.loads(hit.instance)
            key = (hit.entity_id, hit.attr, dataset, (hit.time_us - T0) // 60_000_000)
            assert key not in out
            out[key] = (hit.iid, doc["value"])
    return out


def test_the_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES", raising=False)
    assert cache_entries_from_env() == CACHE_ENTRIES >= 20_000 * 7  # the benches' working sets never evict
    monkeypatch.setenv("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES", "1000")
    assert cache_entries_from_env() == 1000
    assert SQLiteHistory("/nonexistent/h.db").cache_entries == 1000
    for bad in ("many", "-1"):
        monkeypatch.setenv("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES", bad)
        with pytest.raises(SettingsError, match="METROPOLE_BROKER_HISTORY_CACHE_ENTRIES"):
            cache_entries_from_env()


def test_sqlite_caches_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES", str(BOUND))
    path = tmp_path / "h.db"
    from broker.temporal import sqlite as sqlite_history

    async def run() -> None:
        history = SQLiteHistory(path)
        await history.open()
        try:
            iids = await _exercise(history)
        finally:
            await history.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT sid) FROM temporal_series").fetchone() == (160, 160)
            assert conn.execute("SELECT count(*) FROM temporal_change_keys").fetchone() == (40,)
            shapes = conn.execute("SELECT sids, docs FROM temporal_change_shapes").fetchall()
            assert len(shapes) == len(set(shapes))
            # the view: one row per instance, the iids read through the API
            stored = conn.execute("SELECT entity_id, attr, dataset_id, key_us, iid FROM temporal_instances").fetchall()
            assert {(e, a, d, (k - T0) // 60_000_000): i for e, a, d, k, i in stored} == iids
            assert len(stored) == len(iids)
            recompute = sqlite_history._ROLLUP_BACKFILL.replace("INSERT INTO temporal_rollup ", "")
            rollup = conn.execute(f"SELECT * FROM temporal_rollup {_ORDER}").fetchall()
            assert rollup and rollup == conn.execute(f"SELECT * FROM ({recompute}) {_ORDER}").fetchall()

    asyncio.run(run())


def test_postgres_series_cache_stays_bounded(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_BROKER_HISTORY_CACHE_ENTRIES", str(BOUND))
    from broker.temporal import postgres as pg_history

    schema = f"wt_cache23_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute("CREATE TABLE change_log (seq bigint)")  # the store's, read by write_added
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            iids = await _exercise(history)
            # writes interleaved on the loop while the cache is replaced: none loses its sids
            await asyncio.gather(*(history.write([], _rows(e, 3)) for e in ENTITIES[:20]),
                                 *(history.write_added(TENANT, [(e, TYPES)], _rows(e, 3), {}) for e in ENTITIES[20:]))
            assert len(history._series) <= BOUND
            assert tuple(await admin.fetchrow("SELECT count(*), count(DISTINCT sid) FROM temporal_series")) == (160, 160)
            stored = await admin.fetch("SELECT entity_id, attr, dataset_id, key_us, iid FROM temporal_instances"
                                       " WHERE key_us < $1", T0 + 3 * 60_000_000)
            assert {(r[0], r[1], r[2], (r[3] - T0) // 60_000_000): r[4] for r in stored} == iids
            assert len(stored) == len(iids)
            assert await admin.fetchval("SELECT count(*) FROM temporal_instances") == len(iids) + 160
            rollup = [tuple(r) for r in await admin.fetch(
                "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max,"
                f" sumsq FROM temporal_rollup {_ORDER}")]
            recomputed = [tuple(r) for r in await admin.fetch(
                f"SELECT * FROM ({pg_history.ROLLUP_RECOMPUTED}) AS r (tenant, entity_id, attr, hour_us, dataset_id,"
                f" observed, n, n_num, n_pure, n_int, sum, min, max, sumsq) {_ORDER}")]
            assert rollup and rollup == recomputed
        finally:
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
