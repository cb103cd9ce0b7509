"""Starting and stopping history inside the broker's lifespan, and trimming the change log.

The log is trimmed, every `interval` seconds, up to the smallest cursor of
the broker's change consumers (anything with a `.cursor`: the history
recorder, the subscription dispatcher): a record goes once every consumer
is past it. It goes in pieces of at most TRIM_CHUNK records, one
`trim_changes` each, so that no single delete holds the store's writer long.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from broker.store.base import Store
from broker.temporal.postgres import PostgresHistory
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import HistoryStorage
from storage.backends import Backends

log = logging.getLogger("broker.temporal")

TRIM_INTERVAL = 30.0
"""Seconds between two trims of the change log. At 5,000 changes/s a round has about 150,000 records to
delete: TRIM_CHUNK splits it. In one transaction it stalled the store's SQLite writer for 0.7-1.3 s, and
end to end (`bench.ingest_bench --sustain 5000`, SQLite, quiet machine) the agent's outbox then reached
about 7,000 updates, p99 publish-to-visible 880-1,043 ms; in pieces, at most 950-1,141, p99 170-178 ms
(issue 16). A trim every second was measured too (sqlitee2e18): less CPU and the same bound on the store
alone, but end to end on a loaded machine its runs did worse than their pairs, unexplained; so the
interval stays as it was."""

TRIM_CHUNK = 2000
"""The most change-log seqs one `trim_changes` call covers: a trim further behind goes in several calls,
each its own transaction (on SQLite a job of the writer's idle time), so writes queue behind one piece at most."""


class ChangeConsumer(Protocol):
    """A follower of the change log: the log is trimmed up to the smallest `cursor` of them all."""

    @property
    def cursor(self) -> int: ...


HISTORIES: Backends[HistoryStorage] = Backends("history storage", sqlite=lambda db: SQLiteHistory(db.path, db=db),
                                                postgresql=lambda db: PostgresHistory(db.dsn, db.schema, db=db))
"""The history storage implementations by database kind."""

def open_history(store: Store) -> HistoryStorage:
    """The history storage in the same database as `store`, on its connections (not yet opened)."""
    return HISTORIES.open(store.backend)


@dataclass(slots=True)
class TemporalRuntime:
    """History as the broker runs it: the storage, the recorder following the change log, the log trim task."""

    history: HistoryStorage
    recorder: HistoryRecorder
    trimmer: asyncio.Task[None]


async def start_temporal(store: Store, consumers: list[ChangeConsumer], *,
                         trim_interval: float = TRIM_INTERVAL, history: HistoryStorage | None = None) -> TemporalRuntime:
    """Open history, start its recorder, add it to `consumers` (the broker's change consumers, a list the trim
    task reads each round) and start the trim task. The temporal service over them is the application's to build
    (broker.app)."""
    history = open_history(store) if history is None else history
    await history.open()
    recorder = HistoryRecorder(store, history)
    await recorder.start()
    consumers.append(recorder)
    trimmer = asyncio.create_task(trim_forever(store, consumers, trim_interval), name="change-log-trim")
    return TemporalRuntime(history, recorder, trimmer)


async def stop_temporal(runtime: TemporalRuntime) -> None:
    """Stop the trim task and the recorder, close history (before the store closes)."""
    runtime.trimmer.cancel()
    try:
        await runtime.trimmer
    except asyncio.CancelledError:
        pass
    await runtime.recorder.stop()
    await runtime.history.close()


class Trimmer:
    """Trims the log up to the consumers' smallest cursor, TRIM_CHUNK seqs per `trim_changes` call.

    `floor` is the highest seq known trimmed: the first round finds the log's oldest record (after a
    restart the log may start anywhere), the next ones go on from where the last one ended.
    """

    def __init__(self, store: Store, chunk: int = TRIM_CHUNK) -> None:
        self.store = store
        self.chunk = chunk
        self.floor: int | None = None

    async def trim(self, upto: int) -> int:
        """Delete the records with seq <= `upto`, piece by piece; how many went."""
        if upto <= 0:
            return 0
        floor = self.floor
        if floor is None:
            oldest = await self.store.changes_after(0, 1)
            floor = oldest[0].seq - 1 if oldest else upto
        removed = 0
        while floor < upto:
            end = min(upto, floor + self.chunk)
            removed += await self.store.trim_changes(end)
            floor = self.floor = end
        self.floor = floor
        return removed


async def trim_once(store: Store, consumers: list[ChangeConsumer], trimmer: Trimmer | None = None) -> int:
    """Trim the log up to the smallest consumer cursor; records removed (none without consumers)."""
    if not consumers:
        return 0
    upto = min(int(c.cursor) for c in consumers)
    return await (trimmer or Trimmer(store)).trim(upto)


async def trim_forever(store: Store, consumers: list[ChangeConsumer], interval: float) -> None:
    """Trim every `interval` seconds, up to the consumers of that moment."""
    trimmer = Trimmer(store)
    while True:
        await asyncio.sleep(interval)
        try:
            await trim_once(store, list(consumers), trimmer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("change log trim failed")
