"""PostgreSQL history: a notification rewrites an entity's row only where it changes it (issue 16, pgnotify20)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from broker.temporal.model import EntityRow, from_us, to_us, value_row
from broker.temporal.postgres import PostgresHistory
from tests import services

T0 = to_us("2026-03-01T10:00:00Z")
TENANT = "ents"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield services.require_postgres()


def _row(entity: str, second: int) -> Any:
    inst = {"type": "Property", "value": second, "observedAt": from_us(T0 + second * 1_000_000)}
    return value_row(TENANT, entity, "https://x/a", inst, 0)


def test_a_notification_of_a_known_entity_leaves_its_row_as_it_is(pg_dsn: str) -> None:
    schema = f"test_ents_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        admin = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute("CREATE TABLE change_log (seq bigint)")
        history = PostgresHistory(pg_dsn, schema)
        version = "SELECT xmin::text || ctid::text FROM temporal_entities WHERE entity_id = 'urn:e:0'"
        stored = "SELECT types, deleted_us, service_path FROM temporal_entities WHERE entity_id = 'urn:e:0'"
        try:
            await history.open()
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], [_row("urn:e:0", 1)], {"urn:e:0": "/a"})
            first = await admin.fetchval(version)
            # the same types (or some of them), the same path or none: the row is not written again
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], [_row("urn:e:0", 2)], {"urn:e:0": "/a"})
            assert await history.write_added(TENANT, [("urn:e:0", [])], [_row("urn:e:0", 3)], {})
            assert await admin.fetchval(version) == first
            assert tuple(await admin.fetchrow(stored)) == (["https://x/T"], None, "/a")
            # a new type, a new path, a deleted entity notified again: written
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/U"])], [_row("urn:e:0", 4)], {})
            assert tuple(await admin.fetchrow(stored)) == (["https://x/T", "https://x/U"], None, "/a")
            second = await admin.fetchval(version)
            assert second != first
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], [_row("urn:e:0", 5)], {"urn:e:0": "/b"})
            assert tuple(await admin.fetchrow(stored)) == (["https://x/T", "https://x/U"], None, "/b")
            await history.write([EntityRow(TENANT, "urn:e:0", ["https://x/T"], T0)], [])
            assert (await admin.fetchrow(stored))[1] == T0
            assert await history.write_added(TENANT, [("urn:e:0", ["https://x/T"])], [_row("urn:e:0", 6)], {})
            assert (await admin.fetchrow(stored))[1] is None
        finally:
            await history.close()
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    asyncio.run(run())
