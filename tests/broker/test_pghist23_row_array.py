"""PostgreSQL history: a write's rows sent as one array of temporal_row_in, not an array per column (issue 16, pghist23).

asyncpg checks each element of an array parameter against collections.abc ABCs before encoding it; the rows
now travel as one array of a composite type the schema defines. These tests check that a schema made before
(without the type) gets it at open and writes, and that unusual values (NULLs, text with quotes and backslashes,
bytes with zeros, infinities, a DateTime key) read back as they were written, by every write path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

import broker.temporal.postgres as pg
from broker.temporal.model import HistoryRow, from_us, to_us, unique_rows, value_row
from broker.temporal.postgres import ROLLUP_RECOMPUTED, PostgresHistory, _columns
from tests import services
from tests.broker.test_pgnotify23_plain_insert import COUNTER

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "rowarray"
ROLLUP = (
    "SELECT tenant, entity_id, attr, hour_us, dataset_id, observed, n, n_num, n_pure, n_int, sum, min, max, sumsq"
    " FROM temporal_rollup ORDER BY 1, 2, 3, 4, 5, 6"
)
VALUES: list[object] = [
    1.5,
    float("inf"),
    7,
    'a "quoted" \\ text\x00?'.replace("\x00", ""),
    None,
    True,
    [1, "x"],
    {"k": 'v\\"'},
    {"@type": "DateTime", "@value": "2026-03-01T10:00:00Z"},
    -0.0,
    1e300,
]


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _rows(entity: str, second: int) -> list[HistoryRow]:
    at = from_us(T0 + second * 1_000_000)
    rows = []
    for k, value in enumerate(VALUES):
        attr: dict[str, object] = {"type": "Property", "value": value, "observedAt": at}
        if k % 3 == 0:
            attr["unitCode"] = "CEL"  # a stored instance document beside the columns
        if k == 4:
            attr = {"type": "Relationship", "object": "urn:x:\x01\x00bytes".replace("\x00", "0"), "observedAt": at}
        rows.append(value_row(TENANT, entity, f"https://x/a{k}", attr, T0 + second))
    return rows


def test_a_schema_made_before_gets_the_type_and_every_path_writes(pg_dsn: str) -> None:
    async def run() -> None:
        schema = f"test_rowarray_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute("CREATE TABLE change_log (seq bigint)")
        try:
            first = PostgresHistory(pg_dsn, schema)
            await first.open()
            await first.close()
            # the schema as the code before made it: no temporal_row_in
            await admin.execute("DROP TYPE temporal_row_in")
            history = PostgresHistory(pg_dsn, schema)
            await history.open()
            try:
                assert await admin.fetchval("SELECT to_regtype('temporal_row_in') IS NOT NULL")
                await history.write([], _rows("urn:e:w", 0))  # _INSERT, new series
                assert await history.write_added(TENANT, [("urn:e:n", ["https://x/T"])], _rows("urn:e:n", 1), {})
                assert await history.write_added(TENANT, [("urn:e:n", ["https://x/T"])], _rows("urn:e:n", 2), {})
                assert await history.write_added(TENANT, [("urn:e:n", ["https://x/T"])], _rows("urn:e:n", 2), {})
                await history.apply("c", 1, [], _rows("urn:e:w", 0) + _rows("urn:e:w", 3))
            finally:
                await history.close()
            # every column as _columns meant to send it (one stored row per (series, kind, key): the last written)
            sids = {
                (r[0], r[1], r[2], r[3]): r[4]
                for r in await admin.fetch("SELECT tenant, entity_id, attr, dataset_id, sid FROM temporal_series")
            }
            written = [
                r for e, s in (("urn:e:w", 0), ("urn:e:n", 1), ("urn:e:n", 2), ("urn:e:w", 3)) for r in _rows(e, s)
            ]
            meant = sorted(_columns(unique_rows(written), sids)[0], key=lambda t: (t[0], t[1], t[2]))
            got = [
                tuple(r)
                for r in await admin.fetch(
                    "SELECT sid, kind, key_us, observed_us, created_us, modified_us, deleted_us, value_num, value_json,"
                    " instance, obs_key FROM temporal_rows ORDER BY sid, kind, key_us"
                )
            ]
            assert got == meant and len(got) == 4 * len(VALUES)
            stored = [tuple(r) for r in await admin.fetch(ROLLUP)]
            assert stored == [
                tuple(r)
                for r in await admin.fetch(f"SELECT * FROM ({ROLLUP_RECOMPUTED}) AS r ORDER BY 1, 2, 3, 4, 5, 6")
            ]
            assert stored
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())




def _numbers(entity: str, second: int, value: float) -> list[HistoryRow]:
    at = from_us(T0 + second * 1_000_000)
    return [
        value_row(TENANT, entity, f"https://x/{a}", {"type": "Property", "value": value + k, "observedAt": at}, 0)
        for k, a in enumerate(("a", "b", "c"))
    ]


def test_apply_and_write_insert_new_rows_plainly_and_replace_stored_ones(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder's transactions (apply, write) insert new rows without ON CONFLICT (no UPDATE statement on
    temporal_rows); a batch with a stored instance is written again whole with ON CONFLICT (replaced, its hour
    recomputed, its new series kept), the next one too, then plain again."""
    monkeypatch.setattr(pg, "UPSERTS_AFTER_CONFLICT", 1)

    async def run() -> None:
        schema = f"test_rowarray_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        history = PostgresHistory(pg_dsn, schema)
        try:
            await history.open()
            await admin.execute(COUNTER)
            await history.apply("c", 1, [], _numbers("urn:e:0", 1, 1.0))
            await history.write([], _numbers("urn:e:0", 2, 2.0))
            assert await admin.fetchval("SELECT n FROM update_statements") == 0
            # a stored instance (second 1) beside a new series (urn:e:1): the transaction again, with ON CONFLICT
            await history.apply("c", 2, [], _numbers("urn:e:0", 1, 7.0) + _numbers("urn:e:1", 1, 5.0))
            assert await admin.fetchval("SELECT n FROM update_statements") == 1
            assert await admin.fetchval("SELECT seq FROM temporal_cursors WHERE consumer = 'c'") == 2
            await history.write([], _numbers("urn:e:1", 3, 1.0))
            assert await admin.fetchval("SELECT n FROM update_statements") == 2  # the one after it too
            await history.apply("c", 3, [], _numbers("urn:e:1", 4, 1.0))
            assert await admin.fetchval("SELECT n FROM update_statements") == 2  # then plain again
            stored = {
                (r[0], r[2], r[1]): r[3]
                for r in await admin.fetch(
                    "SELECT s.entity_id, s.attr, r.key_us, r.value_num FROM temporal_rows AS r JOIN temporal_series AS s"
                    " USING (sid)"
                )
            }
            assert len(stored) == 15
            at1 = T0 + 1_000_000
            assert [stored[("urn:e:0", at1, f"https://x/{a}")] for a in "abc"] == [7.0, 8.0, 9.0]
            assert [stored[("urn:e:1", at1, f"https://x/{a}")] for a in "abc"] == [5.0, 6.0, 7.0]
            assert await admin.fetchval("SELECT count(*) FROM temporal_series") == 6
            assert [tuple(r) for r in await admin.fetch(ROLLUP)] == [
                tuple(r)
                for r in await admin.fetch(f"SELECT * FROM ({ROLLUP_RECOMPUTED}) AS x ORDER BY 1, 2, 3, 4, 5, 6")
            ]
        finally:
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
