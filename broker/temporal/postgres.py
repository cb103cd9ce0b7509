"""History on the PostgreSQL schema of the store, through a pool of its own.

Instances are appended roughly in time order, so a BRIN index on each time
column is a few pages that prune whole block ranges of a month-long scan;
the unique b-tree on (tenant, entity, attribute, key time, ...) serves the
usual per-entity range and lastN scans, observedAt ones included (the key
time is observedAt wherever an instance has one). Instance documents are bytea (orjson
bytes): only Python reads them, so the server never parses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from broker.temporal.model import EntityRow, HistoryRow, unique_rows
from broker.temporal.storage import Bucket, HistoryStorage, InstanceHit, TimeRange

SCHEMA = """
CREATE TABLE IF NOT EXISTS temporal_instances (iid bigserial PRIMARY KEY, tenant text COLLATE "C" NOT NULL,
    entity_id text COLLATE "C" NOT NULL, attr text COLLATE "C" NOT NULL, dataset_id text COLLATE "C" NOT NULL,
    kind smallint NOT NULL, key_us bigint NOT NULL, observed_us bigint, created_us bigint, modified_us bigint,
    deleted_us bigint, value_num double precision, value_json text, instance bytea NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS temporal_instances_series
    ON temporal_instances (tenant, entity_id, attr, key_us, dataset_id, kind);
DROP INDEX IF EXISTS temporal_instances_key;
DROP INDEX IF EXISTS temporal_instances_observed;
CREATE INDEX IF NOT EXISTS temporal_instances_modified_brin ON temporal_instances USING brin (modified_us);
CREATE INDEX IF NOT EXISTS temporal_instances_observed_brin ON temporal_instances USING brin (observed_us);
CREATE TABLE IF NOT EXISTS temporal_entities (tenant text COLLATE "C" NOT NULL, entity_id text COLLATE "C" NOT NULL,
    types text[] NOT NULL, deleted_us bigint, PRIMARY KEY (tenant, entity_id));
CREATE TABLE IF NOT EXISTS temporal_cursors (consumer text PRIMARY KEY, seq bigint NOT NULL);
ALTER TABLE temporal_entities ADD COLUMN IF NOT EXISTS service_path text COLLATE "C";
"""
_INSERT = (
    "INSERT INTO temporal_instances (tenant, entity_id, attr, dataset_id, kind, key_us, observed_us, created_us,"
    " modified_us, deleted_us, value_num, value_json, instance)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::int8[], $7::int8[], $8::int8[],"
    " $9::int8[], $10::int8[], $11::float8[], $12::text[], $13::bytea[])"
    " ON CONFLICT (tenant, entity_id, attr, key_us, dataset_id, kind) DO UPDATE SET observed_us = excluded.observed_us,"
    " created_us = excluded.created_us, modified_us = excluded.modified_us, deleted_us = excluded.deleted_us,"
    " value_num = excluded.value_num, value_json = excluded.value_json, instance = excluded.instance"
    # the same instance again replaces the stored one (same iid), unless nothing differs
    " WHERE temporal_instances.instance IS DISTINCT FROM excluded.instance"
)
_ENTITY = (
    "INSERT INTO temporal_entities SELECT t, i, string_to_array(ty, E'\\x1f'), d"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS u(t, i, ty, d)"
    " ON CONFLICT (tenant, entity_id) DO UPDATE SET"
    " types = CASE WHEN cardinality(excluded.types) = 0 THEN temporal_entities.types ELSE excluded.types END,"
    " deleted_us = excluded.deleted_us"
)


def _columns(rows: Sequence[HistoryRow]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(13)]
    for r in rows:
        for col, v in zip(cols, (r.tenant, r.entity_id, r.attr, r.dataset_id, r.kind, r.key_us, r.observed_us,
                                  r.created_us, r.modified_us, r.deleted_us, r.value_num, r.value_json, r.instance)):
            col.append(v)
    return cols


def _where(
    tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, first: int,
    datasets: Sequence[str] | None = None,
) -> tuple[str, list[Any], str]:
    params: list[Any] = [tenant, list(entity_ids)]
    clauses = [f"tenant = ${first}", f"entity_id = ANY(${first + 1}::text[])"]

    def p(value: Any) -> str:
        params.append(value)
        return f"${first + len(params) - 1}"

    if attrs is not None:
        clauses.append(f"attr = ANY({p(list(attrs))}::text[])")
    if datasets is not None:
        clauses.append(f"dataset_id = ANY({p(list(datasets))}::text[])")
    column = rng.column or "key_us"
    if rng.column is not None:
        clauses.append(f"{column} IS NOT NULL")
    if column == "observed_us":
        column = "key_us"  # equal to observed_us on every row that has one: the key index serves
    if rng.start is not None:
        clauses.append(f"{column} >= {p(rng.start)}")
    if rng.end is not None:
        clauses.append(f"{column} < {p(rng.end)}")
    return " AND ".join(clauses), params, column


class PostgresHistory(HistoryStorage):
    """History tables in a PostgreSQL schema."""

    def __init__(self, dsn: str, schema: str = "public", *, max_size: int = 4) -> None:
        self.dsn = dsn
        self.schema = schema
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_size,
                                               server_settings={"search_path": self.schema})
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':temporal', 0))")
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "history is not open"
        return self._pool

    @staticmethod
    async def _store(conn: asyncpg.Connection, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        if rows:
            await conn.execute(_INSERT, *_columns(unique_rows(rows)))
        if entities:
            await conn.execute(
                _ENTITY, [e.tenant for e in entities], [e.entity_id for e in entities],
                ["\x1f".join(e.types) for e in entities], [e.deleted_us for e in entities],
            )

    async def load_cursor(self, consumer: str) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(seq), 0) FROM temporal_cursors WHERE consumer = $1", consumer))

    async def apply(self, consumer: str, seq: int, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._store(conn, _last_per_entity(entities), rows)
            await conn.execute(
                "INSERT INTO temporal_cursors VALUES ($1, $2) ON CONFLICT (consumer)"
                " DO UPDATE SET seq = greatest(temporal_cursors.seq, excluded.seq)",
                consumer, seq,
            )

    async def write(self, entities: Sequence[EntityRow], rows: Sequence[HistoryRow]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._store(conn, _last_per_entity(entities), rows)

    async def entities(self, tenant: str, *, ids: Sequence[str] | None = None,
                       types_any: Sequence[str] | None = None) -> list[EntityRow]:
        sql = "SELECT entity_id, types, deleted_us FROM temporal_entities WHERE tenant = $1"
        params: list[Any] = [tenant]
        if ids is not None:
            params.append(list(ids))
            sql += f" AND entity_id = ANY(${len(params)}::text[])"
        if types_any is not None:
            params.append(list(types_any))
            sql += f" AND types && ${len(params)}::text[]"
        rows = await self.pool.fetch(sql + " ORDER BY entity_id", *params)
        return [EntityRow(tenant, r[0], list(r[1]), r[2]) for r in rows]

    async def entity(self, tenant: str, entity_id: str) -> EntityRow | None:
        row = await self.pool.fetchrow(
            "SELECT types, deleted_us FROM temporal_entities WHERE tenant = $1 AND entity_id = $2", tenant, entity_id
        )
        return None if row is None else EntityRow(tenant, entity_id, list(row[0]), row[1])

    async def instances(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, per_attr: int, newest: bool,
        *, total: int | None = None, datasets: Sequence[str] | None = None,
    ) -> list[InstanceHit]:
        where, params, column = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        order = "DESC" if newest else "ASC"
        each = per_attr if total is None else min(per_attr, total)
        # one index range scan per (entity, attribute): LATERAL over the pairs that exist
        sql = (
            f"SELECT h.iid, h.entity_id, h.attr, h.t, h.instance FROM"
            f" (SELECT DISTINCT entity_id, attr FROM temporal_instances WHERE {where}) AS k,"
            f" LATERAL (SELECT iid, entity_id, attr, {column} AS t, instance FROM temporal_instances"
            f"  WHERE {where} AND entity_id = k.entity_id AND attr = k.attr"
            f"  ORDER BY {column} {order}, iid {order} LIMIT {int(each)}) AS h"
        )
        if total is not None:
            sql += f" ORDER BY h.t {order}, h.iid {order} LIMIT {int(total)}"
        else:
            sql += " ORDER BY h.entity_id, h.attr, h.t, h.iid"
        rows = await self.pool.fetch(sql, *params)
        hits = [InstanceHit(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]
        if total is not None:
            hits.sort(key=lambda h: (h.entity_id, h.attr, h.time_us, h.iid))
        return hits

    async def aggregate(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange, origin_us: int, period_us: int,
        *, datasets: Sequence[str] | None = None,
    ) -> list[Bucket]:
        where, params, column = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        if period_us > 0:
            n = len(params)
            bucket = f"(({column} - ${n + 1}::int8) / ${n + 2}::int8)"
            params += [origin_us, period_us]
        else:
            bucket = "0::int8"
        sql = (
            f"SELECT entity_id, attr, {bucket} AS b, count(*), count(DISTINCT value_json), count(value_num),"
            f" sum(value_num), min(value_num), max(value_num), sum(value_num * value_num)"
            f" FROM temporal_instances WHERE {where} AND kind = 0 GROUP BY entity_id, attr, b ORDER BY entity_id, attr, b"
        )
        return [Bucket(*r) for r in await self.pool.fetch(sql, *params)]

    async def series(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> set[tuple[str, str]]:
        where, params, _ = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        rows = await self.pool.fetch(f"SELECT DISTINCT entity_id, attr FROM temporal_instances WHERE {where}", *params)
        return {(r[0], r[1]) for r in rows}

    async def first_time(
        self, tenant: str, entity_ids: Sequence[str], attrs: Sequence[str] | None, rng: TimeRange,
        *, datasets: Sequence[str] | None = None,
    ) -> int | None:
        where, params, column = _where(tenant, entity_ids, attrs, rng, 1, datasets)
        value = await self.pool.fetchval(f"SELECT min({column}) FROM temporal_instances WHERE {where} AND kind = 0", *params)
        return None if value is None else int(value)

    async def delete_entity(self, tenant: str, entity_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM temporal_instances WHERE tenant = $1 AND entity_id = $2", tenant, entity_id)
            status = await conn.execute("DELETE FROM temporal_entities WHERE tenant = $1 AND entity_id = $2", tenant, entity_id)
        return bool(status != "DELETE 0")

    async def delete_instances(self, tenant: str, entity_ids: Sequence[str], rng: TimeRange) -> int:
        where, params, _ = _where(tenant, entity_ids, None, rng, 1)
        return int((await self.pool.execute(f"DELETE FROM temporal_instances WHERE {where}", *params)).split()[-1])

    async def set_service_paths(self, tenant: str, paths: Mapping[str, str]) -> None:
        if paths:
            await self.pool.execute(
                "UPDATE temporal_entities AS e SET service_path = u.p FROM unnest($2::text[], $3::text[]) AS u(i, p)"
                " WHERE e.tenant = $1 AND e.entity_id = u.i", tenant, list(paths), list(paths.values()),
            )

    async def service_paths(self, tenant: str) -> dict[str, str]:
        rows = await self.pool.fetch(
            "SELECT entity_id, service_path FROM temporal_entities WHERE tenant = $1 AND service_path IS NOT NULL", tenant
        )
        return {r[0]: r[1] for r in rows}

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, dataset_id: str | None) -> int:
        sql = "DELETE FROM temporal_instances WHERE tenant = $1 AND entity_id = $2 AND attr = $3"
        params: list[Any] = [tenant, entity_id, attr]
        if dataset_id is not None:
            sql += " AND dataset_id = $4"
            params.append(dataset_id)
        return int((await self.pool.execute(sql, *params)).split()[-1])

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        status = await self.pool.execute(
            "DELETE FROM temporal_instances WHERE iid = $1 AND tenant = $2 AND entity_id = $3 AND attr = $4",
            iid, tenant, entity_id, attr,
        )
        return bool(status != "DELETE 0")

    async def get_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bytes | None:
        value = await self.pool.fetchval(
            "SELECT instance FROM temporal_instances WHERE iid = $1 AND tenant = $2 AND entity_id = $3 AND attr = $4",
            iid, tenant, entity_id, attr,
        )
        return None if value is None else bytes(value)

    async def replace_instance(self, tenant: str, entity_id: str, attr: str, iid: int, row: HistoryRow) -> bool:
        status = await self.pool.execute(
            "UPDATE temporal_instances SET observed_us = $1, modified_us = $2, value_num = $3, value_json = $4, instance = $5"
            " WHERE iid = $6 AND tenant = $7 AND entity_id = $8 AND attr = $9",
            row.observed_us, row.modified_us, row.value_num, row.value_json, row.instance, iid, tenant, entity_id, attr,
        )
        return bool(status != "UPDATE 0")


def _last_per_entity(entities: Sequence[EntityRow]) -> list[EntityRow]:
    """One row per (tenant, entity), the last: ON CONFLICT cannot touch a row twice in one statement."""
    return list({(e.tenant, e.entity_id): e for e in entities}.values())
