"""Subscriptions in one broker process: storage, service, and (while this process leads) dispatch and delivery.

Every process serves the subscription API from the shared database; one
process at a time, the holder of a lease row renewed every few seconds,
follows the change log and delivers. When it stops (or dies and its lease
runs out) another process takes over from the stored cursor and queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from broker.store.base import Store
from broker.subscriptions.delivery import Delivery, DeliverySettings
from broker.subscriptions.dispatcher import Dispatcher
from broker.subscriptions.service import SubscriptionService
from broker.subscriptions.storage import SubscriptionStorage
from broker.subscriptions.storage_postgres import PostgresSubscriptionStorage
from broker.subscriptions.storage_sqlite import SQLiteSubscriptionStorage
from models.context import ContextResolver
from storage.backends import Backends

log = logging.getLogger("broker.subscriptions")

LEASE_TTL = 10.0


STORAGES: Backends[SubscriptionStorage] = Backends(
    "subscription storage", sqlite=lambda db: SQLiteSubscriptionStorage(db.path, db=db),
    postgresql=lambda db: PostgresSubscriptionStorage(db.dsn, db.schema, db=db))
"""The subscription storage implementations by database kind."""

def open_storage(store: Store) -> SubscriptionStorage:
    """Subscription storage in the same database as the entity store, on its connections."""
    return STORAGES.open(store.backend)


class Subscriptions:
    """The subscription machinery of one broker process."""

    def __init__(self, store: Store, resolver: ContextResolver, settings: DeliverySettings | None = None) -> None:
        self.storage = open_storage(store)
        self.service = SubscriptionService(self.storage, store, resolver)
        self.delivery = Delivery(self.storage, settings)
        self.dispatcher = Dispatcher(store, self.storage, resolver, self.delivery.wake)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lead_task: asyncio.Task[None] | None = None
        self._work: list[asyncio.Task[None]] = []

    @property
    def cursor(self) -> int:
        """The last change-log seq dispatched (for the change-log trim)."""
        return self.dispatcher.cursor

    async def settle(self, tenant: str, sub_id: str) -> None:
        """Before a subscription is read: the outcomes of this process's deliveries to it are written."""
        if self._work:  # this process delivers
            await self.delivery.settle(tenant, sub_id)

    async def enqueue(self, tenant: str, sub_id: str, body: bytes) -> None:
        """Queue one rendered notification (render.envelope's form) of a subscription durably, as the dispatcher
        does, and wake its delivery worker when this process delivers (else the leader's rescan finds it).
        Returns once the queue row is written; raises when it could not be."""
        await self.storage.enqueue([(tenant, sub_id, body)], None)
        if self._work:
            self.delivery.wake(tenant, sub_id)

    async def start(self) -> None:
        await self.storage.open()
        self.dispatcher.cursor = await self.storage.cursor() or 0
        self._lead_task = asyncio.create_task(self._lead(), name="subscriptions lease")

    async def _lead(self) -> None:
        while True:
            try:
                leader = await self.storage.acquire_lease(self.owner, time.time(), LEASE_TTL)
                if leader and (not self._work or any(t.done() for t in self._work)):
                    await self._stop_work()
                    self.delivery = Delivery(self.storage, self.delivery.settings)
                    self.dispatcher.wake = self.delivery.wake
                    self._work = [asyncio.create_task(self.dispatcher.run(), name="subscriptions dispatcher"),
                                  asyncio.create_task(self.delivery.run(), name="subscriptions delivery")]
                elif not leader:
                    await self._stop_work()
                    self.dispatcher.cursor = await self.storage.cursor() or 0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription lease round failed")
            await asyncio.sleep(LEASE_TTL / 4)

    async def _stop_work(self) -> None:
        for task in self._work:
            task.cancel()
        for task in self._work:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("subscription task ended with an error")
        self._work = []

    async def stop(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            await asyncio.gather(self._lead_task, return_exceptions=True)
        await self._stop_work()
        try:
            await self.storage.release_lease(self.owner)
        finally:
            await self.storage.close()
