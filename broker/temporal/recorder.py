"""HistoryRecorder: follows the store's change log into the temporal history.

It reads `store.changes_after(cursor)` in batches, turns each change into
history rows (model.rows_of_change) and stores them together with the new
cursor in one transaction: after a crash it resumes where the last
committed batch ended, and a batch applied twice stores nothing twice (rows
are unique on their key). `catch_up()` lets a temporal query first wait
until history holds every write committed before it (read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from broker.store.base import Store
from broker.temporal.model import EntityRow, HistoryRow, rows_of_change
from broker.temporal.storage import HistoryStorage
from models.errors import InternalError

log = logging.getLogger("broker.temporal")

T = TypeVar("T")


class HistoryRecorder:
    """A change-log consumer writing history; `.cursor` is the last seq applied."""

    name = "temporal"

    def __init__(self, store: Store, history: HistoryStorage, *, batch: int = 1000, idle: float = 0.2) -> None:
        self.store = store
        self.history = history
        self.batch = batch
        self.idle = idle
        self.cursor = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the saved cursor and follow the log in a background task."""
        self.cursor = await self.history.load_cursor(self.name)
        self._task = asyncio.create_task(self._follow(), name="history-recorder")

    async def stop(self) -> None:
        """Stop following (what is committed stays; the next start resumes from the saved cursor)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def poke(self) -> None:
        """Tell the recorder there is something new (it also polls every `idle` seconds)."""
        self._wake.set()

    async def step(self) -> int:
        """Apply one batch of the log; how many changes it held."""
        async with self._lock:
            records = await self.store.changes_after(self.cursor, self.batch)
            if not records:
                return 0
            entities: list[EntityRow] = []
            rows: list[HistoryRow] = []
            for record in records:
                entity, new = rows_of_change(record)
                entities.append(entity)
                rows.extend(new)
            await self.history.apply(self.name, records[-1].seq, entities, rows)
            self.cursor = records[-1].seq
            return len(records)

    async def catch_up(self, timeout: float = 30.0) -> None:
        """Return once history includes every change committed before this call (read-your-writes).

        The caller applies the backlog itself, batch by batch, rather than
        waiting for the background task: a read costs one `last_change_seq`
        when history is current, and the time to record what is missing
        otherwise. Past `timeout` seconds of that, InternalError: an answer
        that silently misses writes the client made is worse than none.
        """
        target = await self.store.last_change_seq()
        if self.cursor >= target:
            return
        deadline = time.monotonic() + timeout
        while self.cursor < target:
            if await self.step() == 0:
                break  # trimmed past the target, nothing left
            if time.monotonic() > deadline:
                raise InternalError(f"history is {target - self.cursor} changes behind after {timeout:g} s; try again")

    async def read_current(self, read: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """`read()` of history once it includes every change committed before this call (as after `catch_up`).

        The check and the read run together, one round trip instead of two in a
        row: the read stands when the cursor was already at the log's last seq
        before either started (history then held every earlier commit while the
        read ran); otherwise the backlog is applied (`catch_up`) and it reads again.
        """
        start = self.cursor
        check = asyncio.ensure_future(self.store.last_change_seq())
        try:
            value = await read()
        finally:
            target = await check
        if start >= target:
            return value
        await self.catch_up(timeout)
        return await read()

    async def _follow(self) -> None:
        while True:
            try:
                if await self.step() == self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end history: log, wait, retry
                log.exception("history recorder failed at seq %s; retrying", self.cursor)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle)
            except TimeoutError:
                pass
