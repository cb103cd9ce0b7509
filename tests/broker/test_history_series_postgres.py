"""PostgreSQL history: series ids of a write, made by it or found already stored (issue 16, pg18).

The series insert returns the sids it makes; the keys it finds stored (made by another
process, or before a restart: not in this process's cache) are looked up after it. Rows
of both kinds must land under their own series, on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory
from broker.temporal.storage import TimeRange
from tests import services

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "series"
A, B = "https://x/a", "https://x/b"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _row(entity: str, attr: str, second: int, value: int, dataset: str = "") -> Any:
    inst: dict[str, Any] = {"type": "Property", "value": value, "observedAt": from_us(T0 + second * 1_000_000)}
    if dataset:
        inst["datasetId"] = dataset
    return value_row(TENANT, entity, attr, inst, 0)


def test_series_made_here_and_series_found_stored(pg_dsn: str) -> None:
    schema = f"test_series_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        admin = await asyncpg.connect(pg_dsn)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        first, second = PostgresHistory(pg_dsn, schema), PostgresHistory(pg_dsn, schema)
        try:
            await first.open()
            await first.write([EntityRow(TENANT, "urn:e:1", ["https://x/T"])],
                              [_row("urn:e:1", A, 0, 1), _row("urn:e:1", B, 0, 2, "ds")])
            await second.open()  # another process: none of the first's series in its cache
            # stored series (A, B/ds), new ones (B default, a second entity), a key repeated in the batch
            await second.write([EntityRow(TENANT, "urn:e:2", ["https://x/T"])], [
                _row("urn:e:1", A, 1, 10), _row("urn:e:1", B, 1, 20, "ds"), _row("urn:e:1", B, 1, 30),
                _row("urn:e:2", A, 1, 40), _row("urn:e:2", A, 2, 50)])
            await first.write([], [_row("urn:e:2", A, 3, 60)])  # made by the second, unknown to the first
            series = await admin.fetch(f'SELECT entity_id, attr, dataset_id, sid FROM "{schema}".temporal_series')
            assert len(series) == 4 and len({r["sid"] for r in series}) == 4
            stored = await admin.fetch(
                f'SELECT s.entity_id, s.attr, s.dataset_id, r.key_us, r.value_num FROM "{schema}".temporal_rows r'
                f' JOIN "{schema}".temporal_series s USING (sid) ORDER BY r.value_num')
            second_us = 1_000_000
            assert [tuple(r) for r in stored] == [
                ("urn:e:1", A, "", T0, 1.0), ("urn:e:1", B, "ds", T0, 2.0), ("urn:e:1", A, "", T0 + second_us, 10.0),
                ("urn:e:1", B, "ds", T0 + second_us, 20.0), ("urn:e:1", B, "", T0 + second_us, 30.0),
                ("urn:e:2", A, "", T0 + second_us, 40.0), ("urn:e:2", A, "", T0 + 2 * second_us, 50.0),
                ("urn:e:2", A, "", T0 + 3 * second_us, 60.0),
            ]
            hits = await second.instances(TENANT, ["urn:e:1", "urn:e:2"], None, TimeRange(None, -(2**62), 2**62), 100, False)
            assert len(hits) == 8
        finally:
            await first.close()
            await second.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())


def test_write_added_makes_its_series_in_its_statement(pg_dsn: str) -> None:
    """write_added with series this process does not know: made in the write's one statement (notifypg19).

    Known, stored-but-unknown (made by another process) and new series in one write; a write behind the
    change log makes no series; a series another transaction makes while the statement waits for it (its
    insert of the same key not yet committed) is not in the statement's snapshot: the write is made again
    in a transaction of its own, under that series.
    """
    schema = f"test_series_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        first, second = PostgresHistory(pg_dsn, schema), PostgresHistory(pg_dsn, schema)
        try:
            await first.open()
            await second.open()
            await admin.execute("CREATE TABLE change_log (seq bigint)")
            await first.write([], [_row("urn:e:1", A, 0, 1)])  # stored, unknown to the second
            await second.write([], [_row("urn:e:1", B, 0, 2)])  # known to the second
            rows = [_row("urn:e:1", A, 1, 10), _row("urn:e:1", B, 1, 20), _row("urn:e:2", A, 1, 30),
                    _row("urn:e:2", B, 1, 40, "ds"), _row("urn:e:2", A, 2, 50)]
            await admin.execute("INSERT INTO change_log VALUES (1)")  # history behind the log: nothing written
            assert not await second.write_added(TENANT, [("urn:e:2", ["https://x/T"])], rows, {}, current="rec")
            assert await admin.fetchval("SELECT count(*) FROM temporal_series") == 2
            await admin.execute("INSERT INTO temporal_cursors VALUES ('rec', 1)")
            assert await second.write_added(TENANT, [("urn:e:2", ["https://x/T"])], rows, {"urn:e:2": "/p"}, current="rec")
            stored = await admin.fetch(
                "SELECT s.entity_id, s.attr, s.dataset_id, r.value_num FROM temporal_rows r JOIN temporal_series s"
                " USING (sid) ORDER BY r.value_num")
            assert [tuple(r) for r in stored] == [
                ("urn:e:1", A, "", 1.0), ("urn:e:1", B, "", 2.0), ("urn:e:1", A, "", 10.0), ("urn:e:1", B, "", 20.0),
                ("urn:e:2", A, "", 30.0), ("urn:e:2", B, "ds", 40.0), ("urn:e:2", A, "", 50.0)]
            series = {(r[0], r[1], r[2]): r[3] for r in await admin.fetch(
                "SELECT entity_id, attr, dataset_id, sid FROM temporal_series")}
            assert len(series) == 4
            assert {k[1:]: v for k, v in second._series.items()} == series  # the sids it learnt are the stored ones
            assert await admin.fetchval("SELECT service_path FROM temporal_entities WHERE entity_id = 'urn:e:2'") == "/p"

            # a series made by another transaction while the write waits on its key
            other = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
            try:
                tx = other.transaction()
                await tx.start()
                await other.execute("INSERT INTO temporal_series (tenant, entity_id, attr, dataset_id)"
                                    " VALUES ($1, 'urn:e:3', $2, '')", TENANT, A)
                write = asyncio.create_task(second.write_added(TENANT, [("urn:e:3", ["https://x/T"])],
                                                               [_row("urn:e:3", A, 1, 60)], {}, current="rec"))
                await asyncio.sleep(0.5)
                assert not write.done()  # waiting on the uncommitted key
                await tx.commit()
                assert await write
            finally:
                await other.close()
            assert await admin.fetchval(
                "SELECT r.value_num FROM temporal_rows r JOIN temporal_series s USING (sid)"
                " WHERE s.entity_id = 'urn:e:3'") == 60.0
            assert await admin.fetchval("SELECT count(*) FROM temporal_series WHERE entity_id = 'urn:e:3'") == 1
        finally:
            await first.close()
            await second.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
