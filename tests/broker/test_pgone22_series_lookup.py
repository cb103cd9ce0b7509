"""PostgreSQL history: a notification's new series are found by index, not by a scan of every series (pgone22).

write_added's statement with new series (_ADDED_SERIES) looks up the keys its insert did not make (made by
another process, or before a restart). That lookup was a LEFT JOIN of temporal_series, which the statement's
generic plan (made while the table was small, kept for the connection's life) ran as a hash join over a scan
of the whole table: 0.43 ms of a new entity's 0.85 ms at 1,926 series, growing with them (issue 16).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from broker.temporal.model import from_us, to_us, value_row
from broker.temporal.postgres import _ADDED_SERIES, PostgresHistory
from tests import services

T0 = to_us("2026-03-01T10:00:00Z")


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


@pytest.mark.parametrize("series", [0, 3000])
def test_new_series_lookup_reads_the_unique_index_in_the_generic_plan(pg_dsn: str, series: int) -> None:
    schema = f"wt_pgone22_{uuid.uuid4().hex[:10]}"

    async def run() -> None:
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            await admin.execute("CREATE TABLE change_log (seq bigint)")
            if series:  # a table that grew since the statistics (none taken: the planner's guess of its size)
                await admin.execute("INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
                                    " SELECT 't', 'urn:e:' || n, 'https://x/a', '' FROM generate_series(1, $1) AS n", series)
            await admin.execute("SET plan_cache_mode = force_generic_plan")
            await admin.execute(f"PREPARE added_series AS {_ADDED_SERIES}")
            plan = "\n".join(r[0] for r in await admin.fetch(f"EXPLAIN EXECUTE added_series({', '.join(['NULL'] * 11)})"))
            assert "Seq Scan on temporal_series" not in plan, plan
            assert "temporal_series_tenant_entity_id_attr_dataset_id_key on temporal_series s" in plan, plan
            # and the statement still writes: a new series beside one stored by another writer (unknown here)
            await admin.execute("INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
                                " VALUES ('t', 'urn:e:x', 'https://x/a', '')")
            rows = [value_row("t", "urn:e:x", attr, {"type": "Property", "value": n, "observedAt": from_us(T0)}, 0)
                    for n, attr in enumerate(("https://x/a", "https://x/b"))]
            assert await history.write_added("t", [("urn:e:x", ["https://x/T"])], rows, {})
            stored = await admin.fetch("SELECT s.attr, r.value_num FROM temporal_rows r JOIN temporal_series s USING (sid)"
                                       " WHERE s.entity_id = 'urn:e:x' ORDER BY s.attr")
            assert [tuple(r) for r in stored] == [("https://x/a", 0.0), ("https://x/b", 1.0)]
        finally:
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
