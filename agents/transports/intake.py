"""The intake: where a transport's message becomes durable before it is acknowledged.

Transports `submit` each `Inbound` with a callback (from any thread); one
asyncio task takes whatever has queued up, runs the ingestor on each message
(the registry it reads is async), appends every resulting entity update to
the outbox in one transaction (group commit, on a worker thread) and only then
calls the callbacks: MQTT sends its PUBACK, HTTP answers 200. A message the
ingestor rejects is acknowledged too (the ingestor has recorded the rejection),
so a bad payload never comes back forever; a failed commit acknowledges
nothing, so the device (or the MQTT broker) sends it again.
"""

from __future__ import annotations

import asyncio
import logging
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.outbox import Outbox, OutboxItem
from agents.messages import EntityUpdate, Inbound
from agents.metrics import Metrics

__all__ = ["Intake", "Done", "to_outbox_item"]

log = logging.getLogger("metropole.agents.intake")

Done = Callable[[bool], None]
Ingest = Callable[[Inbound], Sequence[EntityUpdate] | Awaitable[Sequence[EntityUpdate]]]


def to_outbox_item(update: EntityUpdate, accepted_at: float) -> OutboxItem:
    """The outbox row of one entity update; the device key orders rows per device."""
    return OutboxItem(
        target=update.broker_url or "",
        tenant=update.tenant,
        context=tuple(update.context),
        device=f"{update.tenant}|{update.apikey}|{update.device_id}",
        entity=update.entity,
        accepted_at=accepted_at,
    )


class Intake:
    """Group-commit from transports into the outbox, as one asyncio task."""

    def __init__(self, ingest: Ingest, outbox: Outbox, *, metrics: Metrics | None = None, max_batch: int = 1000) -> None:
        self._ingest = ingest
        self._outbox = outbox
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Inbound, Done] | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Messages submitted from other threads wait here until one callback in the loop moves them all
        # into the queue: one wake-up of the loop per burst, not one per message.
        self._pending: deque[tuple[Inbound, Done]] = deque()
        self._wake_scheduled = False
        m = metrics or Metrics()
        self._m_received = m.counter(
            "metropole_agent_intake_messages_total", "Southbound messages taken in, by transport", ["transport"]
        )
        self._m_received_by: dict[str, Any] = {}  # transport -> its labelled child, made once
        self._m_updates = m.counter("metropole_agent_outbox_appended_total", "Entity updates committed to the outbox")
        self._m_failed = m.counter("metropole_agent_intake_failures_total", "Commits that failed (nothing acknowledged)")
        self._m_batch = m.histogram(
            "metropole_agent_intake_batch_size", "Messages per outbox commit", buckets=(1, 2, 5, 10, 20, 50, 100, 500, 1000)
        )
        self._m_depth = m.gauge("metropole_agent_outbox_depth", "Entity updates waiting in the outbox")

    async def start(self) -> None:
        """Start the intake task in the running loop."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="agent-intake")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None and self._queue is not None:
            self._drain_pending()
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    def submit(self, message: Inbound, done: Done) -> None:
        """Thread-safe: take `message`; `done(True)` once durable (or rejected), `done(False)` on failure.

        `done` runs in the intake's event loop; it must not block.
        """
        loop, q = self._loop, self._queue
        if loop is None or q is None or loop.is_closed():
            done(False)
            return
        self._pending.append((message, done))
        if not self._wake_scheduled:
            # Read after the append: either a drain still to run sees our message, or we schedule one.
            self._wake_scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain_pending)
            except RuntimeError:  # the loop closed meanwhile
                self._wake_scheduled = False
                raise

    def _drain_pending(self) -> None:
        """In the loop: move what other threads submitted into the queue, in submission order."""
        self._wake_scheduled = False  # first: a submit from now on schedules another drain
        q, pending = self._queue, self._pending
        assert q is not None
        while pending:
            q.put_nowait(pending.popleft())

    async def accept(self, message: Inbound) -> bool:
        """Await durability of one message (for request/response transports, in the intake's loop)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.submit(message, lambda ok: future.done() or future.set_result(ok))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        q = self._queue
        stopping = False
        while not stopping:
            first = await q.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not q.empty():
                nxt = q.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Inbound, Done]]) -> None:
        items: list[OutboxItem] = []
        now = time.time()
        received = self._m_received_by
        for message, _ in batch:
            child = received.get(message.transport)
            if child is None:
                child = received[message.transport] = self._m_received.labels(transport=message.transport)
            child.inc()
            try:
                result = self._ingest(message)
                updates = await result if inspect.isawaitable(result) else result
            except Exception:  # the ingestor records bad input itself; this is a bug, keep going
                log.exception("ingest failed on %s", message.topic or message.device_id)
                continue
            items.extend(to_outbox_item(u, now) for u in updates)
        try:
            if items:
                await asyncio.to_thread(self._outbox.append, items)
        except Exception:
            log.exception("outbox commit failed: %d messages not acknowledged", len(batch))
            self._m_failed.inc()
            ok = False
        else:
            ok = True
            self._m_updates.inc(len(items))
            self._m_batch.observe(len(batch))
            self._m_depth.set(self._outbox.depth)
        for _, done in batch:
            try:
                done(ok)
            except Exception:
                log.exception("acknowledgement callback failed")
