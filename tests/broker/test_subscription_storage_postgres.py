"""The PostgreSQL subscription storage under concurrency: deleting a subscription while a delivery is recorded.

`record` (the delivery's outcomes) locks the delivered queue rows, then the
subscription's row (its status members). `delete` must take its locks in the
same order, or the two deadlock and PostgreSQL aborts one of them (a 500 on
DELETE /subscriptions/{id}: seen in the ETSI suite's runs on PostgreSQL).

The test holds a delivered queue row the way `record` does, lets `delete` start
and wait on it (read from pg_locks/pg_stat_activity, no sleep as proof), then
takes the subscription's row as `record` does next: with the wrong order that
second step closes a cycle and PostgreSQL's deadlock detector fails one side.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from broker.subscriptions.storage import StoredSubscription
from broker.subscriptions.storage_postgres import PostgresSubscriptionStorage
from tests import services


async def _wait_for_lock_waiter(conn: asyncpg.Connection, other: asyncpg.Connection) -> None:
    """Return once some other backend of this database waits on a lock (the storage's delete)."""
    while True:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND pid <> $1",
            other.get_server_pid())
        if waiting:
            return
        await asyncio.sleep(0.01)  # polling a condition, not a timing assertion


async def _scenario(dsn: str, schema: str) -> None:
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    storage = PostgresSubscriptionStorage(dsn, schema)
    await storage.open()
    holder = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        tenant, sub_id = "t", f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex}"
        doc = {"id": sub_id, "type": "Subscription", "entities": [{"type": "Thing"}],
               "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
        assert await storage.create(StoredSubscription(tenant, doc, None, 0, {}), None)
        await storage.enqueue([(tenant, sub_id, b"{}"), (tenant, sub_id, b"{}")], None)
        first = (await storage.head(tenant, sub_id, 1))[0]

        tx = holder.transaction()
        await tx.start()
        await holder.execute("DELETE FROM sub_queue WHERE qid = $1", first.qid)  # record: the delivered row
        deleting = asyncio.create_task(storage.delete(tenant, sub_id))
        await _wait_for_lock_waiter(admin, holder)
        # record, next: the subscription's status row. Deadlock here if delete locked it first.
        stats = await holder.fetchval(
            "SELECT stats FROM subscriptions WHERE tenant = $1 AND id = $2 FOR UPDATE", tenant, sub_id)
        assert stats is not None  # the row is ours now, as record has it
        await tx.commit()
        assert await deleting is True
        assert await storage.get(tenant, sub_id) is None
        assert await storage.head(tenant, sub_id, 10) == []
    finally:
        await holder.close()
        await storage.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def test_delete_while_a_delivery_is_recorded_does_not_deadlock() -> None:
    dsn = services.require_postgres()
    asyncio.run(_scenario(dsn, f"test_subdel_{uuid.uuid4().hex[:10]}"))
