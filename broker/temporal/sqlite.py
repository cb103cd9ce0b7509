"""History on the SQLite file of the store: its own connection and thread, WAL shared with the store.

The store's writer and this one take turns on the file's write lock
(busy_timeout); reads and writes of history run on one thread here, so the
event loop never waits on the disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from broker.store.sqlite import write_lock
from broker.store.sqlite_rows import insert_rows
from broker.store.sqlite_thread import SQLiteThread
from broker.temporal.model import EntityRow, HistoryRow, unique_rows
from broker.temporal.storage import Bucket, HistoryStorage, InstanceHit, TimeRange

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS temporal_instances (iid INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
           entity_id TEXT NOT NULL, attr TEXT NOT NULL, dataset_id TEXT NOT NULL, kind INTEGER NOT NULL,
           key_us INTEGER NOT NULL, observed_us INTEGER, created_us INTEGER, modified_us INTEGER, deleted_us INTEGER,
           value_num REAL, value_json TEXT, instance BLOB NOT NULL)""",
    # key_us before dataset_id: a time range of one attribute seeks instead of scanning its whole
    # history, and, key_us being observedAt where there is one, this index also serves
    # timeproperty=observedAt (see _where), so the former observedAt index is dropped
    """CREATE UNIQUE INDEX IF NOT EXISTS temporal_instances_series
           ON temporal_instances (tenant, entity_id, attr, key_us, dataset_id, kind)""",
    "DROP INDEX IF EXISTS temporal_instances_key",
    "DROP INDEX IF EXISTS temporal_instances_observed",
    "CREATE INDEX IF NOT EXISTS temporal_instances_modified ON temporal_instances (tenant, entity_id, attr, modified_us)",
    """CREATE TABLE IF NOT EXISTS temporal_entities (tenant TEXT NOT NULL, entity_id TEXT NOT NULL,
           types TEXT NOT NULL, deleted_us INTEGER, PRIMARY KEY (tenant, entity_id)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS temporal_cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
)


_INSERT_ROWS = (
    "INSERT INTO temporal_instances (tenant, entity_id, attr, dataset_id, kind, key_us, observed_us,"
    " created_us, modified_us, deleted_us, value_num, value_json, instance)"
)
# the same instance again replaces the stored one (same iid), unless nothing differs: a replayed
# change log writes nothing
_UPSERT = (
    " ON CONFLICT (tenant, entity_id, attr, key_us, dataset_id, kind) DO UPDATE SET observed_us = excluded.observed_us,"
    " created_us = excluded.created_us, modified_us = excluded.modified_us, deleted_us = excluded.deleted_us,"
    " value_num = excluded.value_num, value_json = excluded.value_json, instance = excluded.instance"
    " WHERE instance IS NOT excluded.instance"
)
_ENTITY_ROWS = "INSERT INTO temporal_entities (tenant, entity_id, types, deleted_us)"
_ENTITY_CONFLICT = (
    " ON CONFLICT (tenant, entity_id) DO UPDATE SET"
    " types = CASE WHEN excluded.types = '[]' THEN types ELSE excluded.types END, deleted_us = excluded.deleted_us"
)


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


def _where(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, datasets: Sequence[str] | None = None
) -> tuple[str, list[Any], str]:
    clauses = ["tenant = ?", "entity_id IN (SELECT value FROM json_each(?))", "kind >= 0"]
    params: list[Any] = [tenant, _json(entity_ids)]
    if attrs is not None:
        clauses.append("attr IN (SELECT value FROM json_each(?))")
        params.append(_json(attrs))
    if datasets is not None:
        clauses.append("dataset_id IN (SELECT value FROM json_each(?))")
        params.append(_json(datasets))
    column = rng.column or "key_us"
    if rng.column is not None:
        clauses.append(f"{column} IS NOT NULL")
    if column == "observed_us":
        column = "key_us"  # equal to observed_us on every row that has one: the key index serves
    if rng.start is not None:
        clauses.append(f"{column} >= ?")
        params.append(rng.start)
    if rng.end is not None:
        clauses.append(f"{column} < ?")
        params.append(rng.end)
    return " AND ".join(clauses), params, column


def _add_service_path(conn: sqlite3.Connection) -> None:
    """temporal_entities.service_path, added in place to a file that predates it (SQLite has no ADD COLUMN IF NOT EXISTS)."""
    if any(row[1] == "service_path" for row in conn.execute("PRAGMA table_info(temporal_entities)")):
        return
    try:
        conn.execute("ALTER TABLE temporal_entities ADD COLUMN service_path TEXT")
    except sqlite3.OperationalError as exc:  # another process added it between the check and here
        if "duplicate column" not in str(exc):
            raise


class SQLiteHistory(HistoryStorage):
    """History tables in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._wlock = write_lock(self.path)
        self._db = SQLiteThread(path, name="sqlite-history",
                                pragmas=("synchronous=NORMAL", "busy_timeout=30000", "cache_size=-64000"))

    async def open(self) -> None:
        def setup(conn: sqlite3.Connection) -> None:
            for sql in SCHEMA:
                conn.execute(sql)
            _add_service_path(conn)

        await self._db.open(setup)

    async def close(self) -> None:
        await self._db.close()

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        # a write takes the file's in-process lock, as the store's writer does (broker.store.sqlite.write_lock)
        lock = self._wlock if write and self.path != ":memory:" else None
        return await self._db.tx(fn, write=write, lock=lock)

    @staticmethod
    def _store(conn: sqlite3.Connection, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        # multi-row VALUES: see broker.store.sqlite_rows for why not executemany or json_each
        insert_rows(conn, _INSERT_ROWS, [
            (r.tenant, r.entity_id, r.attr, r.dataset_id, r.kind, r.key_us, r.observed_us, r.created_us,
             r.modified_us, r.deleted_us, r.value_num, r.value_json, r.instance) for r in unique_rows(rows)
        ], _UPSERT)
        insert_rows(conn, _ENTITY_ROWS, [(e.tenant, e.entity_id, _json(e.types), e.deleted_us) for e in entities],
                    _ENTITY_CONFLICT)

    async def load_cursor(self, consumer: str) -> int:
        row = await self._tx(lambda c: c.execute("SELECT seq FROM temporal_cursors WHERE consumer = ?", (consumer,)).fetchone())
        return int(row[0]) if row else 0

    async def apply(self, consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        def run(c: sqlite3.Connection) -> None:
            self._store(c, entities, rows)
            c.execute(
                "INSERT INTO temporal_cursors VALUES (?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
                (consumer, seq),
            )

        await self._tx(run, write=True)

    async def write(self, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        await self._tx(lambda c: self._store(c, entities, rows), write=True)

    async def entities(self, tenant: str, *, ids: Sequence[str] | None = None,
                       types_any: Sequence[str] | None = None) -> list[EntityRow]:
        sql = "SELECT entity_id, types, deleted_us FROM temporal_entities WHERE tenant = ?"
        params: list[Any] = [tenant]
        if ids is not None:
            sql += " AND entity_id IN (SELECT value FROM json_each(?))"
            params.append(_json(ids))
        if types_any is not None:  # decided in SQLite: no row of another type becomes a Python object
            sql += " AND EXISTS (SELECT 1 FROM json_each(types) WHERE value IN (SELECT value FROM json_each(?)))"
            params.append(_json(types_any))
        sql += " ORDER BY entity_id"
        return await self._tx(lambda c: [EntityRow(tenant, r[0], orjson.loads(r[1]), r[2]) for r in c.execute(sql, params)])

    async def entity(self, tenant: str, entity_id: str) -> EntityRow | None:
        sql = "SELECT types, deleted_us FROM temporal_entities WHERE tenant = ? AND entity_id = ?"
        row = await self._tx(lambda c: c.execute(sql, (tenant, entity_id)).fetchone())
        return None if row is None else EntityRow(tenant, entity_id, orjson.loads(row[0]), row[1])

    async def instances(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, per_attr: int, newest: bool,
        *, total: int | None = None, datasets: Sequence[str] | None = None,
    ) -> list[InstanceHit]:
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        order = "DESC" if newest else "ASC"
        if total is not None and per_attr >= total:
            # no attribute can exceed the total: one ordered scan, no window
            sql = (f"SELECT iid, entity_id, attr, {column}, instance FROM temporal_instances WHERE {where}"
                   f" ORDER BY {column} {order}, iid {order} LIMIT ?")
            args: tuple[Any, ...] = (*params, total)
        else:
            sql = (
                f"SELECT iid, entity_id, attr, t, instance FROM (SELECT iid, entity_id, attr, {column} AS t, instance,"
                f" row_number() OVER (PARTITION BY entity_id, attr ORDER BY {column} {order}, iid {order}) AS rn"
                f" FROM temporal_instances WHERE {where}) WHERE rn <= ?"
            )
            args = (*params, per_attr)
            if total is not None:
                sql += f" ORDER BY t {order}, iid {order} LIMIT ?"
                args += (total,)
            else:
                sql += " ORDER BY entity_id, attr, t, iid"
        hits = await self._tx(lambda c: [InstanceHit(*r) for r in c.execute(sql, args)])
        if total is not None:
            hits.sort(key=lambda h: (h.entity_id, h.attr, h.time_us, h.iid))
        return hits

    async def aggregate(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, origin_us: int, period_us: int,
        *, datasets: Sequence[str] | None = None,
    ) -> list[Bucket]:
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        bucket = f"(({column} - ?) / ?)" if period_us > 0 else "0"
        bparams = [origin_us, period_us] if period_us > 0 else []
        sql = (
            f"SELECT entity_id, attr, {bucket} AS b, count(*), count(DISTINCT value_json), count(value_num),"
            f" sum(value_num), min(value_num), max(value_num), sum(value_num * value_num)"
            f" FROM temporal_instances WHERE {where} AND kind = 0 GROUP BY entity_id, attr, b ORDER BY entity_id, attr, b"
        )
        return await self._tx(lambda c: [Bucket(*r) for r in c.execute(sql, (*bparams, *params))])

    async def series(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> set[tuple[str, str]]:
        where, params, _ = _where(tenant, entity_ids, attrs, rng, datasets)
        sql = f"SELECT DISTINCT entity_id, attr FROM temporal_instances WHERE {where}"
        return await self._tx(lambda c: {(r[0], r[1]) for r in c.execute(sql, params)})

    async def first_time(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> int | None:
        where, params, column = _where(tenant, entity_ids, attrs, rng, datasets)
        row = await self._tx(lambda c: c.execute(f"SELECT min({column}) FROM temporal_instances WHERE {where} AND kind = 0",
                                                 params).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def delete_entity(self, tenant: str, entity_id: str) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM temporal_instances WHERE tenant = ? AND entity_id = ?", (tenant, entity_id))
            return c.execute("DELETE FROM temporal_entities WHERE tenant = ? AND entity_id = ?", (tenant, entity_id)).rowcount > 0

        return await self._tx(run, write=True)

    async def delete_instances(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> int:
        where, params, _ = _where(tenant, entity_ids, None, rng)
        return await self._tx(lambda c: c.execute(f"DELETE FROM temporal_instances WHERE {where}", params).rowcount, write=True)

    async def set_service_paths(self, tenant: str, paths: Mapping[str, str]) -> None:
        sql = "UPDATE temporal_entities SET service_path = ? WHERE tenant = ? AND entity_id = ?"
        rows = [(p, tenant, i) for i, p in paths.items()]
        if rows:
            await self._tx(lambda c: c.executemany(sql, rows), write=True)

    async def service_paths(self, tenant: str) -> dict[str, str]:
        sql = "SELECT entity_id, service_path FROM temporal_entities WHERE tenant = ? AND service_path IS NOT NULL"
        return await self._tx(lambda c: {r[0]: r[1] for r in c.execute(sql, (tenant,))})

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, dataset_id: str | None) -> int:
        sql = "DELETE FROM temporal_instances WHERE tenant = ? AND entity_id = ? AND attr = ?"
        params: tuple[Any, ...] = (tenant, entity_id, attr)
        if dataset_id is not None:
            sql += " AND dataset_id = ?"
            params += (dataset_id,)
        return await self._tx(lambda c: c.execute(sql, params).rowcount, write=True)

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        sql = "DELETE FROM temporal_instances WHERE iid = ? AND tenant = ? AND entity_id = ? AND attr = ?"
        return await self._tx(lambda c: c.execute(sql, (iid, tenant, entity_id, attr)).rowcount > 0, write=True)

    async def get_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bytes | None:
        sql = "SELECT instance FROM temporal_instances WHERE iid = ? AND tenant = ? AND entity_id = ? AND attr = ?"
        row = await self._tx(lambda c: c.execute(sql, (iid, tenant, entity_id, attr)).fetchone())
        return None if row is None else bytes(row[0])

    async def replace_instance(self, tenant: str, entity_id: str, attr: str, iid: int, row: HistoryRow) -> bool:
        sql = (
            "UPDATE temporal_instances SET observed_us = ?, modified_us = ?, value_num = ?, value_json = ?, instance = ?"
            " WHERE iid = ? AND tenant = ? AND entity_id = ? AND attr = ?"
        )
        params = (row.observed_us, row.modified_us, row.value_num, row.value_json, row.instance, iid, tenant, entity_id, attr)
        return await self._tx(lambda c: c.execute(sql, params).rowcount > 0, write=True)
