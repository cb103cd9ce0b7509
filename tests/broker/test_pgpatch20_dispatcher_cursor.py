"""The dispatcher with no subscription: its cursor stored at most every IDLE_CURSOR_EVERY seconds (issue 16, pgpatch20).

Each store is a commit with its WAL flush; it was one per step (about 15 a second under a PATCH load).
Fakes for the store and the subscription storage count the calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.subscriptions import dispatcher as dispatcher_module
from broker.subscriptions.dispatcher import Dispatcher


class FakeStore:
    def __init__(self) -> None:
        self.last = 100

    async def last_change_seq(self) -> int:
        return self.last

    async def changes_after(self, seq: int, limit: int) -> list[Any]:
        raise AssertionError("no page is read while there is no subscription")


class FakeStorage:
    def __init__(self, cursor: int | None) -> None:
        self.stored = cursor
        self.enqueues: list[int | None] = []
        self.versions = 0

    async def cursor(self) -> int | None:
        return self.stored

    async def version(self) -> int:
        self.versions += 1
        return 1

    async def all(self) -> list[Any]:
        return []

    async def enqueue(self, items: list[Any], cursor: int | None) -> None:
        assert not items
        self.enqueues.append(cursor)
        self.stored = cursor


def dispatcher(store: FakeStore, storage: FakeStorage) -> Dispatcher:
    return Dispatcher(store, storage, None, lambda t, s: None)  # type: ignore[arg-type]


def test_idle_steps_store_the_cursor_at_most_once_an_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "IDLE_CURSOR_EVERY", 3600.0, raising=False)

    async def run() -> None:
        store, storage = FakeStore(), FakeStorage(cursor=100)
        d = dispatcher(store, storage)
        await d.start()
        versions = storage.versions
        for _ in range(20):
            store.last += 7
            assert await d.step() == 7
        assert d.cursor == 240  # moved in memory (the change-log trim reads it)
        assert storage.enqueues == []  # not stored: the interval has not passed
        assert storage.versions - versions == 20  # one version check per step with new records
        assert await d.step() == 0  # nothing new: no query but the log's end
        assert storage.versions - versions == 20

        monkeypatch.setattr(dispatcher_module, "IDLE_CURSOR_EVERY", 0.0)
        store.last += 1
        assert await d.step() == 1
        assert storage.enqueues == [241]
        assert await d.step() == 0
        assert storage.enqueues == [241]  # unchanged cursor: not stored again

        # a dispatcher started on that database (a restart, another process taking the lease) resumes there
        again = dispatcher(store, FakeStorage(cursor=storage.stored))
        await again.start()
        assert again.cursor == 241

    asyncio.run(run())


def test_a_fresh_database_stores_the_log_end_at_once() -> None:
    async def run() -> None:
        store, storage = FakeStore(), FakeStorage(cursor=None)
        d = dispatcher(store, storage)
        await d.start()
        assert storage.enqueues == [100] and d.cursor == 100

    asyncio.run(run())
