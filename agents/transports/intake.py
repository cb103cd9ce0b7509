"""The intake: where a transport's message becomes durable before it is acknowledged.

Transports `submit` each `Inbound` with a callback (from any thread; MQTT and
HTTP both run in the intake's loop); the intake runs the ingestor on each
message (the registry it reads is async), appends the resulting entity
updates of whatever has been mapped meanwhile to the outbox in one
transaction (group commit, on a worker thread, while the next messages are
being mapped; at most one commit starts per `commit_interval`, so a low
rate does not pay a thread hop and an fsync per message) and only then
calls the callbacks: MQTT sends its PUBACK, HTTP answers 200. A message the
ingestor rejects is acknowledged too (the ingestor has recorded the rejection),
so a bad payload never comes back forever; a failed commit acknowledges
nothing, so the device (or the MQTT broker) sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.outbox import Outbox, OutboxItem
from agents.messages import EntityUpdate, Inbound, Outcome
from agents.metrics import Metrics

__all__ = ["Done", "Intake", "StatusCoalescer", "Waiter", "to_outbox_item"]

log = logging.getLogger("metropole.agents.intake")

Done = Callable[[bool], None]
Ingest = Callable[[Inbound], Sequence[EntityUpdate] | Outcome | Awaitable[Sequence[EntityUpdate] | Outcome]]


class Waiter:
    """The callback of a request/response transport's message: resolves a future with what became of it."""

    __slots__ = ("future", "outcome")

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.outcome: Outcome | None = None  # set when the ingestor returns an Outcome

    def __call__(self, ok: bool) -> None:
        if not self.future.done():
            self.future.set_result(ok)


def to_outbox_item(update: EntityUpdate, accepted_at: float) -> OutboxItem:
    """The outbox row of one entity update; the device key orders rows per device."""
    # positional: building a named tuple from keywords costs twice as much, and this runs twice per measure
    return OutboxItem(update.broker_url or "", update.tenant, tuple(update.context),
                      f"{update.tenant}|{update.apikey}|{update.device_id}", update.entity, accepted_at,
                      update.service_path)


class StatusCoalescer:
    """At most one status update per entity per `interval` seconds; the latest one is held meanwhile.

    A device's status entity (the profile's `Device`: dateLastValueReported, controlledProperty and readings
    such as batteryLevel or rssi) comes with every measure, which doubled the broker's entity updates;
    iotagent-json never writes one. The first status of an entity (or the first after a quiet interval)
    goes out at once, so the Device entity appears with the device's first measure; the ones after it
    within the interval are merged (the latest value of each attribute wins, so an attribute only an
    earlier measure carried is kept) and go out when the interval since the last one sent has passed,
    and at shutdown. Held updates live in memory only: a crash loses at most the last interval's status
    of a device, never a measure, and the device's next measure sends a fresh one.
    """

    __slots__ = ("_held", "_sent", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # key -> (due at, merged outbox item), in order of first holding; key -> monotonic time of the last send
        self._held: dict[tuple[str, str, str, str], tuple[float, OutboxItem]] = {}
        self._sent: dict[tuple[str, str, str, str], float] = {}

    def offer(self, item: OutboxItem, now: float) -> bool:
        """True: send `item` now; False: it is held (merged into what is held for its entity)."""
        key = (item.target, item.tenant, item.service_path, str(item.entity.get("id")))
        held = self._held.get(key)
        if held is not None:
            entity = {**held[1].entity, **item.entity}
            self._held[key] = (held[0], item._replace(entity=entity))
            return False
        sent = self._sent.get(key)
        if sent is None or now - sent >= self.interval:
            self._sent[key] = now
            return True
        self._held[key] = (sent + self.interval, item)
        return False

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def next_due(self) -> float | None:
        """When the earliest held update falls due (monotonic), None when nothing is held."""
        return min((due for due, _ in self._held.values()), default=None)

    def take_due(self, now: float) -> list[OutboxItem]:
        """The held updates due by `now`, which count as sent now; forgets entities quiet for an interval."""
        due = [key for key, (at, _) in self._held.items() if at <= now]
        items = [self._held.pop(key)[1] for key in due]
        for key in due:
            self._sent[key] = now
        if len(self._sent) > 2 * len(self._held) + 1024:  # keep memory to the devices heard from lately
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.interval or k in self._held}
        return items

    def take_all(self) -> list[OutboxItem]:
        """Everything held, at once (shutdown)."""
        items = [item for _, item in self._held.values()]
        self._held.clear()
        return items


class Intake:
    """Group-commit from transports into the outbox: an ingest task and a commit task, pipelined.

    The ingest task maps what was submitted, `INGEST_CHUNK` messages at a
    time, and hands each chunk's entity updates to the commit task, which
    appends everything ingested meanwhile in one transaction (at most
    `max_batch` messages) and then acknowledges those messages. Mapping the
    next messages thus overlaps the previous commit's fsync: the broker only
    has so many unacknowledged messages in flight to us (receive maximum), and
    without the overlap the agent idled during every fsync. Commits stay in
    submission order, so the outbox keeps each device's order.
    """

    INGEST_CHUNK = 100  # messages mapped between two yields to the event loop

    def __init__(self, ingest: Ingest, outbox: Outbox, *, metrics: Metrics | None = None, max_batch: int = 1000,
                 commit_interval: float = 0.01, status_interval: float = 0.0) -> None:
        self._ingest = ingest
        # Device status updates (EntityUpdate.status) go out at most once per status_interval per entity;
        # 0 = every one, as the measures (which are never coalesced). See StatusCoalescer.
        self._status = StatusCoalescer(status_interval) if status_interval > 0 else None
        self._status_task: asyncio.Task[None] | None = None
        self._mapping = False  # the ingest task is mapping a chunk (not yet in _ingested)
        self._status_wake = asyncio.Event()  # set when the coalescer starts holding something
        self._outbox = outbox
        self._max_batch = max_batch
        # At most one commit starts per interval (unless max_batch messages wait): at a low rate a commit
        # (a hop to a worker thread and an fsync) per message cost more than the messages themselves.
        self._commit_interval = commit_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._ingesting = False
        # Submitted messages wait here, in order, until the ingest task takes them: a plain deque rather
        # than an asyncio.Queue (no per-message future bookkeeping), and one wake-up of the task per burst.
        self._pending: deque[tuple[Inbound, Done]] = deque()
        self._wake_scheduled = False
        self._ingest_waiter: asyncio.Future[None] | None = None
        # Ingested chunks waiting for the commit task: (their entity updates, one callback per message).
        self._ingested: deque[tuple[list[OutboxItem], list[Done]]] = deque()
        self._commit_waiter: asyncio.Future[None] | None = None
        self._taken = 0  # messages the ingest task took from _pending whose callbacks have not run yet
        self._commit_listeners: list[Callable[[], None]] = []
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
        """Start the intake tasks in the running loop."""
        if not self._tasks:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._stopping = False
            self._ingesting = True
            self._tasks = [asyncio.create_task(self._ingest_all(), name="agent-intake"),
                           asyncio.create_task(self._commit_all(), name="agent-intake-commit")]
            if self._status is not None:
                self._status_task = asyncio.create_task(self._status_all(), name="agent-intake-status")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._tasks:
            self._stopping = True
            if self._status_task is not None:
                self._status_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._status_task
                self._status_task = None
            self._wake_up()
            await asyncio.gather(*self._tasks)  # the ingest task hands the held status updates over last
            self._tasks = []

    def submit(self, message: Inbound, done: Done) -> None:
        """Thread-safe: take `message`; `done(True)` once durable (or rejected), `done(False)` on failure.

        `done` runs in the intake's event loop; it must not block.
        """
        loop = self._loop
        if loop is None or not self._tasks or loop.is_closed():
            done(False)
            return
        self._pending.append((message, done))
        if not self._wake_scheduled:
            # Read after the append: either a wake-up still to run sees our message, or we schedule one.
            self._wake_scheduled = True
            if threading.get_ident() == self._loop_thread:
                loop.call_soon(self._wake_up)  # in the loop already (MQTT, HTTP): no self-pipe write
                return
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the loop closed meanwhile
                self._wake_scheduled = False
                raise

    @property
    def backlog(self) -> int:
        """Messages submitted whose callbacks have not run yet (a transport may stop reading beyond some)."""
        return len(self._pending) + self._taken

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the loop) after every commit's callbacks: the backlog just went down."""
        self._commit_listeners.append(listener)

    def off_commit(self, listener: Callable[[], None]) -> None:
        """Stop calling a listener `on_commit` added (a transport that closed for good)."""
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    def _wake_up(self) -> None:
        """In the loop: let the ingest task look at what was submitted."""
        self._wake_scheduled = False  # first: a submit from now on schedules another wake-up
        _resolve(self._ingest_waiter)

    async def accept(self, message: Inbound) -> bool:
        """Await durability of one message (for request/response transports, in the intake's loop)."""
        return (await self.accept_outcome(message))[0]

    async def accept_outcome(self, message: Inbound) -> tuple[bool, Outcome | None]:
        """Await durability of one message; (durable, what the ingestor said of it when it says: an Outcome)."""
        waiter = Waiter(asyncio.get_running_loop().create_future())
        self.submit(message, waiter)
        ok = await waiter.future
        return ok, waiter.outcome

    # -- the ingest task -----------------------------------------------------------------------------

    async def _ingest_all(self) -> None:
        loop = self._loop
        assert loop is not None
        pending = self._pending
        try:
            while pending or not self._stopping:
                if not pending:
                    self._ingest_waiter = loop.create_future()
                    await self._ingest_waiter
                    continue
                take = min(len(pending), self.INGEST_CHUNK)
                self._taken += take
                self._mapping = True
                try:
                    self._ingested.append(await self._map([pending.popleft() for _ in range(take)]))
                finally:
                    self._mapping = False
                _resolve(self._commit_waiter)
                await asyncio.sleep(0)  # let the loop read, acknowledge and start the commit between chunks
        finally:
            if self._status is not None:  # stopping: what is held goes out now, after every message
                held = self._status.take_all()
                if held:
                    self._ingested.append((held, []))
            self._ingesting = False
            _resolve(self._commit_waiter)

    async def _status_all(self) -> None:
        """Hand the held status updates that are due to the commit task, as they fall due."""
        status, loop = self._status, self._loop
        assert status is not None and loop is not None
        while True:
            due = status.next_due()
            if due is None:  # nothing held: wait for the ingest task to hold something
                self._status_wake.clear()
                await self._status_wake.wait()
                continue
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if self._mapping:  # a chunk being mapped may hold an earlier update of the same entity: after it
                await asyncio.sleep(0.01)
                continue
            items = status.take_due(time.monotonic())
            if items:
                self._ingested.append((items, []))
                _resolve(self._commit_waiter)

    async def _map(self, chunk: list[tuple[Inbound, Done]]) -> tuple[list[OutboxItem], list[Done]]:
        """The entity updates of a chunk of messages, with the messages' callbacks."""
        items: list[OutboxItem] = []
        now = time.time()
        by_transport: dict[str, int] = {}
        for message, done in chunk:
            by_transport[message.transport] = by_transport.get(message.transport, 0) + 1
            try:
                result = self._ingest(message)
                updates = await result if inspect.isawaitable(result) else result
            except Exception:  # the ingestor records bad input itself; this is a bug, keep going
                log.exception("ingest failed on %s", message.topic or message.device_id)
                continue
            if isinstance(updates, Outcome):
                if type(done) is Waiter:
                    done.outcome = updates
                updates = updates.updates
            status = self._status
            if status is None:
                items.extend([to_outbox_item(u, now) for u in updates])
            else:
                clock = time.monotonic()
                items.extend([to_outbox_item(u, now) for u in updates
                              if not u.status or status.offer(to_outbox_item(u, now), clock)])
                if status.holding and not self._status_wake.is_set():
                    self._status_wake.set()
        self._count_received(by_transport)
        return items, [done for _, done in chunk]

    def _count_received(self, by_transport: dict[str, int]) -> None:
        """One counter increment per transport and chunk, not per message."""
        for transport, n in by_transport.items():
            child = self._m_received_by.get(transport)
            if child is None:
                child = self._m_received_by[transport] = self._m_received.labels(transport=transport)
            child.inc(n)

    # -- the commit task -----------------------------------------------------------------------------

    async def _commit_all(self) -> None:
        loop = self._loop
        assert loop is not None
        ingested = self._ingested
        next_commit = 0.0  # loop time before which no commit starts (unless a full batch waits)
        while ingested or self._ingesting:
            if not ingested:
                self._commit_waiter = loop.create_future()
                await self._commit_waiter
                continue
            pause = next_commit - loop.time()
            if pause > 0 and self._ingesting and sum(len(d) for _, d in ingested) < self._max_batch:
                await asyncio.sleep(pause)  # let the messages of the interval join this commit
            next_commit = loop.time() + self._commit_interval
            items, dones = ingested.popleft()
            while ingested and len(dones) + len(ingested[0][1]) <= self._max_batch:
                more, more_dones = ingested.popleft()
                items += more
                dones += more_dones
            await self._commit(items, dones)

    async def _commit(self, items: list[OutboxItem], dones: list[Done]) -> None:
        try:
            if items:
                await asyncio.to_thread(self._outbox.append, items)
        except Exception:
            log.exception("outbox commit failed: %d messages not acknowledged", len(dones))
            self._m_failed.inc()
            ok = False
        else:
            ok = True
            self._m_updates.inc(len(items))
            self._m_batch.observe(len(dones))
            self._m_depth.set(self._outbox.depth)
        for done in dones:
            try:
                done(ok)
            except Exception:
                log.exception("acknowledgement callback failed")
        self._taken -= len(dones)
        for listener in self._commit_listeners:
            listener()


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
