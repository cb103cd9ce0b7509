"""PostgreSQL history: a notification's new instances by a plain INSERT, a stored one by ON CONFLICT (issue 16, pgnotify23).

An INSERT ... ON CONFLICT DO UPDATE fires the rollup's UPDATE statement trigger even where no row conflicts;
write_added inserts its rows plainly and, where one is already stored, writes again with ON CONFLICT. The
tests count the UPDATE statements PostgreSQL runs on temporal_rows with a trigger of their own, and check what
is stored (instances, rollups) against a write made the former way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

import broker.temporal.postgres as pg
from broker.temporal.model import from_us, to_us, value_row
from broker.temporal.postgres import ROLLUP_RECOMPUTED, PostgresHistory
from tests import services

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "plain"
COUNTER = """
CREATE TABLE update_statements (n int);
INSERT INTO update_statements VALUES (0);
CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    UPDATE update_statements SET n = n + 1; RETURN NULL; END $$;
CREATE TRIGGER count_update AFTER UPDATE ON temporal_rows FOR EACH STATEMENT EXECUTE FUNCTION count_update();
"""
STORED = "SELECT s.entity_id, s.attr, r.key_us, r.value_num FROM temporal_rows AS r JOIN temporal_series AS s USING (sid)"
ROLLUP = ("SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max, sumsq"
          " FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6")


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _rows(entity: str, second: int, value: float) -> list[Any]:
    at = from_us(T0 + second * 1_000_000)
    return [value_row(TENANT, entity, f"https://x/{a}", {"type": "Property", "value": value + k, "observedAt": at}, 0)
            for k, a in enumerate(("a", "b", "c"))]


async def _schema(pg_dsn: str) -> tuple[asyncpg.Connection, str]:
    schema = f"test_plain_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute("CREATE TABLE change_log (seq bigint)")
    return admin, schema


def test_new_instances_run_no_update_statement(pg_dsn: str) -> None:
    """New rows, of known series and of new ones: no UPDATE statement trigger fires (one per write before)."""

    async def run() -> None:
        admin, schema = await _schema(pg_dsn)
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            await admin.execute(COUNTER)
            for second in range(1, 6):  # series made by the first write, known after
                assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], _rows("urn:e:0", second, 1.5), {})
            assert await history.write_added(TENANT, [("urn:e:1", ["https://x/T"])], _rows("urn:e:1", 1, 2.5), {})
            assert await admin.fetchval("SELECT n FROM update_statements") == 0
            assert await admin.fetchval("SELECT count(*) FROM temporal_rows") == 18
            assert [tuple(r) for r in await admin.fetch(ROLLUP)] == [tuple(r) for r in await admin.fetch(
                f"SELECT * FROM ({ROLLUP_RECOMPUTED}) AS x ORDER BY 1, 2, 3, 4, 5, 6")]
        finally:
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())


def test_a_stored_instance_is_replaced_as_before(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance written again with another value replaces the stored one, its hour recomputed; the next writes
    use ON CONFLICT at once, then plain inserts again; another process that does not know the series (the
    new-series statement) replaces it too."""
    monkeypatch.setattr(pg, "UPSERTS_AFTER_CONFLICT", 1)

    async def run() -> None:
        admin, schema = await _schema(pg_dsn)
        history = PostgresHistory(pg_dsn, schema)
        other = PostgresHistory(pg_dsn, schema)  # knows no series: writes with _ADDED_SERIES
        try:
            await history.open()
            await other.open()
            await admin.execute(COUNTER)
            types = [("urn:e:0", ["https://x/T"])]
            assert await history.write_added(TENANT, types, _rows("urn:e:0", 1, 1.0), {})
            assert await history.write_added(TENANT, types, _rows("urn:e:0", 1, 7.0) + _rows("urn:e:0", 2, 3.0), {})
            assert await admin.fetchval("SELECT n FROM update_statements") == 1  # the write again, with ON CONFLICT
            assert await history.write_added(TENANT, types, _rows("urn:e:0", 3, 3.0), {})
            assert await admin.fetchval("SELECT n FROM update_statements") == 2  # the one after it too
            assert await history.write_added(TENANT, types, _rows("urn:e:0", 4, 3.0), {})
            assert await history.write_added(TENANT, types, _rows("urn:e:0", 5, 3.0), {})
            assert await admin.fetchval("SELECT n FROM update_statements") == 2  # then plain again
            assert await other.write_added(TENANT, types, _rows("urn:e:0", 2, 9.0), {})
            assert await admin.fetchval("SELECT n FROM update_statements") == 3
            stored = {(r[2], r[1]): r[3] for r in await admin.fetch(STORED)}
            assert len(stored) == 15
            at = [T0 + s * 1_000_000 for s in range(6)]
            assert [stored[(at[1], f"https://x/{a}")] for a in "abc"] == [7.0, 8.0, 9.0]
            assert [stored[(at[2], f"https://x/{a}")] for a in "abc"] == [9.0, 10.0, 11.0]
            assert [tuple(r) for r in await admin.fetch(ROLLUP)] == [tuple(r) for r in await admin.fetch(
                f"SELECT * FROM ({ROLLUP_RECOMPUTED}) AS x ORDER BY 1, 2, 3, 4, 5, 6")]
        finally:
            await other.close()
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
