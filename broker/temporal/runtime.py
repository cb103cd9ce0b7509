"""Starting and stopping history inside the broker's lifespan, and trimming the change log.

The log is trimmed, every `interval` seconds, up to the smallest cursor of
the consumers registered in `app.state.change_consumers` (anything with a
`.cursor`): a record goes once every consumer is past it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from broker.store.base import Store
from broker.temporal.postgres import PostgresHistory
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.sqlite import SQLiteHistory
from broker.temporal.storage import HistoryStorage

log = logging.getLogger("broker.temporal")


def open_history(store: Store) -> HistoryStorage:
    """The history storage in the same database as `store` (not yet opened)."""
    from broker.store.postgres import PostgresStore
    from broker.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteHistory(store.path)
    if isinstance(store, PostgresStore):
        return PostgresHistory(store.dsn, store.schema)
    raise TypeError(f"no temporal storage for {type(store).__name__}")


async def start_temporal(state: Any, store: Store, *, trim_interval: float = 30.0) -> None:
    """Open history (`state.history`), start its recorder (`state.recorder`), register it as a change consumer,
    start the trim task. The temporal service over them is the application's to build (broker.app)."""
    history = open_history(store)
    await history.open()
    recorder = HistoryRecorder(store, history)
    await recorder.start()
    state.history = history
    state.recorder = recorder
    if not hasattr(state, "change_consumers"):
        state.change_consumers = []
    state.change_consumers.append(recorder)
    state.change_trimmer = asyncio.create_task(trim_forever(store, state, trim_interval), name="change-log-trim")


async def stop_temporal(state: Any) -> None:
    """Stop the trim task and the recorder, close history (before the store closes)."""
    for task in (getattr(state, "change_trimmer", None),):
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    if getattr(state, "recorder", None) is not None:
        await state.recorder.stop()
    if getattr(state, "history", None) is not None:
        await state.history.close()


async def trim_once(store: Store, consumers: list[Any]) -> int:
    """Trim the log up to the smallest consumer cursor; records removed (none without consumers)."""
    if not consumers:
        return 0
    upto = min(int(c.cursor) for c in consumers)
    return await store.trim_changes(upto) if upto > 0 else 0


async def trim_forever(store: Store, state: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await trim_once(store, list(getattr(state, "change_consumers", [])))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("change log trim failed")
