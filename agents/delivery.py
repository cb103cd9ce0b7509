"""Northbound delivery: outbox rows -> NGSI-LD batch writes, in order, never dropping a measure.

One cycle of a worker:

    lease a page of the oldest deliverable rows (the outbox keeps per-device order)
    group them by (broker, tenant, @context)      batch requests per group
    split each group into waves                    an entity appears at most `repeats` times
                                                   per wave (default once), so two measures of
                                                   one entity stay in order
    send each wave, `batch_size` entities a request at most (upsert/update, merge or
    replace: `mode`), as the JSON the outbox stored (never parsed and serialised again)
        2xx              -> ack
        207, 4xx entity  -> dead letter with the broker's ProblemDetails
        207, 5xx entity  -> release with backoff; later waves of that entity/device wait too
        whole request 4xx-> bisect until the guilty entity is alone, then dead-letter it
        whole request 500-> the first time, as "broker away"; when the rows were refused before,
                            bisect: if other rows of the group get through, the ones the broker still
                            answers 500 alone are poison: retried with backoff (their device waits),
                            dead-lettered with the broker's answer after `poison_attempts` refusals;
                            if nothing gets through, the broker is failing: as "broker away"
        broker away, 5xx -> release everything with backoff, skip that broker until then

Several workers may run at once: the outbox never leases a row while an older
row of its device is leased, so concurrency never reorders a device.

One fast device (a gateway forwarding a district): its rows come in a page of
their own, but two requests touching one entity are never in flight at once
(the broker may apply concurrent requests in either order), so with one
instance of an entity per request a device goes one round trip per measure.
`repeats` > 1 lets a request carry up to that many consecutive instances of an
entity, in order: clause 5.5.11.2 has the broker apply them in array order and
keep every one in the entity's history. Only for brokers that do: the embedded
broker does (it logs one change per instance, broker.service.batch), and the
agent's setting defaults to the batch size (METROPOLE_AGENT_BATCH_REPEATS, agents.runtime);
this class's default stays 1, for a broker that keeps only the last instance of a request.
The broker reports errors per entity id, not per instance: an entity sent
more than once in a request that the broker refused has its instances sent
again one per request, to find the bad one; a retryable error retries them all.

Requests in flight: a wave larger than `batch_size` goes out as several
requests at once, up to `in_flight` (METROPOLE_AGENT_REQUESTS_IN_FLIGHT).
All instances of one entity in a wave go in the same request (or, when there
are more of them than `batch_size`, in consecutive requests of their own,
one after the other), so two requests touching one entity are still never
in flight at once and an entity's instances reach the broker in order.
Entities of one device may go in concurrent requests, as they already went
in one request: the broker keeps no order between entities. A request
started after an entity or device was held back leaves that entity's or
device's rows out (they wait, released without delay, as before); one
already in flight is settled by its own answer. A request that fails as
"broker away" waits for the group's other requests to be answered, so every
row is settled once: delivered by its own request, or released with the rest.

Isolation: each target broker (a group's `cbroker`, or the agent's default)
has a lane of its own, `workers` workers that lease only that target's rows.
A broker that does not answer (a connect that times out after
METROPOLE_AGENT_BROKER_TIMEOUT seconds) holds back its own lane only, and
that lane sleeps through its backoff instead of leasing: before lanes, one
dead group's broker stretched every cycle, and a healthy group's p50 went
from 35 ms to about 1 s. A lane starts when the outbox first sees its target.

Pacing: a worker that found a full page goes on at once. Once a cycle comes
back with less (delivery caught up), no worker leases again until `linger`
seconds after that cycle began, so that at a low rate one request carries
the measures of `linger` seconds rather than one request (and two outbox
transactions) per measure; this was the agent's main cost at 500 msg/s. A
worker that found nothing sleeps until an append wakes it: a measure
arriving after a quiet spell goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.ngsild import BatchMode, NgsiLdClient, is_retryable
from adapters.outbox import Leased, Outbox
from agents.metrics import Metrics
from models.errors import NgsiLdError

__all__ = ["Delivery", "DeliveryOptions"]

log = logging.getLogger("metropole.agents.delivery")


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How delivery batches and retries."""

    mode: BatchMode = "update"
    batch_size: int = 500  # entities per request at most
    page_size: int = 2000  # rows leased per cycle (at least batch_size): fewer, larger outbox transactions
    workers: int = 2
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    idle_poll: float = 1.0  # look again this often even when nobody wakes us (released rows come due)
    linger: float = 0.02  # seconds a worker that caught up waits before its next lease (see Pacing)
    poison_attempts: int = 3  # a row the broker alone answers 500 this often is dead-lettered (issue 17)
    repeats: int = 1  # instances of one entity per request at most (see One fast device)
    in_flight: int = 4  # requests of one page's group in flight at once (see Requests in flight)


@dataclass(slots=True)
class _Target:
    failures: int = 0
    down_until: float = 0.0


class _Lane:
    """The workers of one target and what they wait on."""

    __slots__ = ("in_flight", "quiet_until", "settled", "target", "wake")

    def __init__(self, target: str) -> None:
        self.target = target
        self.wake = asyncio.Event()  # rows were appended (for any target: cheap, and never missed)
        self.settled = asyncio.Event()  # a cycle of this lane settled its rows
        self.quiet_until = 0.0  # loop time before which no worker of the lane leases a partial page again
        self.in_flight = 0  # rows leased by the lane's workers and not settled yet


@dataclass(slots=True)
class _Cycle:
    ack: list[Leased] = field(default_factory=list)
    retry: list[tuple[Leased, float, str]] = field(default_factory=list)  # row, delay, error
    dead: list[tuple[Leased, dict[str, Any]]] = field(default_factory=list)
    settled: set[int] = field(default_factory=set)

    def done(self, row: Leased) -> None:
        self.ack.append(row)
        self.settled.add(row.seq)

    def again(self, row: Leased, delay: float, error: str) -> None:
        self.retry.append((row, delay, error))
        self.settled.add(row.seq)

    def refuse(self, row: Leased, problem: dict[str, Any]) -> None:
        self.dead.append((row, problem))
        self.settled.add(row.seq)


class Delivery:
    """Moves the outbox to the NGSI-LD brokers; `run()` until `stop()`."""

    def __init__(
        self,
        outbox: Outbox,
        default_client: NgsiLdClient,
        *,
        options: DeliveryOptions = DeliveryOptions(),
        metrics: Metrics | None = None,
        client_factory: Callable[[str], NgsiLdClient] | None = None,
        on_dead_letter: Callable[[Leased, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.outbox = outbox
        self.options = options
        self._default = default_client
        self._factory = client_factory or (lambda url: NgsiLdClient(url))
        self._on_dead_letter = on_dead_letter
        self._clients: dict[str, NgsiLdClient] = {}
        self._targets: dict[str, _Target] = {}
        self._lanes: dict[str, _Lane] = {}
        self._new_target = asyncio.Event()  # the outbox may know a target that has no lane yet
        self._stopped = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        m = metrics or Metrics()
        self._m_depth = m.gauge("metropole_agent_outbox_depth", "Entity updates waiting in the outbox")
        self._m_latency = m.histogram(
            "metropole_agent_delivery_latency_seconds",
            "From acceptance into the outbox to the broker's acknowledgement",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self._m_delivered = m.counter("metropole_agent_delivered_total", "Entity updates the broker accepted")
        self._m_errors = m.counter(
            "metropole_agent_broker_errors_total",
            "Broker errors by kind (unavailable: retried later; rejected: dead-lettered; entity_retry)",
            ["kind"],
        )
        self._m_dead = m.counter("metropole_agent_dead_letters_total", "Entity updates moved to the dead letters")
        self._m_depth.set(outbox.depth)

    # -- life cycle ------------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: new rows are in the outbox."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._appended)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _appended(self) -> None:
        for lane in self._lanes.values():
            lane.wake.set()
        if not self.outbox.targets <= self._lanes.keys():
            self._new_target.set()

    def stop(self) -> None:
        """Finish the current cycles and return from `run()`."""
        self._stopping = True
        self._stopped.set()
        self._new_target.set()
        for lane in self._lanes.values():
            lane.wake.set()
            lane.settled.set()

    async def run(self) -> None:
        """Deliver until stopped: a lane of `options.workers` workers per target broker."""
        self._loop = asyncio.get_running_loop()
        self.outbox.on_append(self.wake)
        workers: list[asyncio.Task[None]] = []
        try:
            while not self._stopping:
                self._new_target.clear()
                for target in sorted(self.outbox.targets - self._lanes.keys()):
                    lane = self._lanes[target] = _Lane(target)
                    workers += [asyncio.create_task(self._worker(lane), name=f"delivery {target or 'default'}")
                                for _ in range(max(1, self.options.workers))]
                await self._new_target.wait()
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for client in self._clients.values():
                await client.aclose()

    @property
    def _page(self) -> int:
        return max(self.options.page_size, self.options.batch_size)

    async def _worker(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        full = False
        state = self._targets.setdefault(lane.target, _Target())
        while not self._stopping:
            down = state.down_until - time.time()
            if down > 0:  # the lane's broker is backing off: nothing of this lane can go meanwhile
                await self._rest(self._stopped, down)
                continue
            pause = lane.quiet_until - loop.time()
            if pause > 0 and not full:
                await asyncio.sleep(pause)
            lane.wake.clear()  # appends (and settles) from now on set these again: none goes unnoticed
            lane.settled.clear()
            started = loop.time()
            try:
                moved = await self.deliver_once(lane)
            except Exception:  # never let a bug stop delivery: rows stay in the outbox
                log.exception("delivery cycle failed")
                moved = 0
            full = moved >= self._page
            if full or self._stopping:
                continue
            # Caught up: no worker leases a partial page again before `linger` has passed (see Pacing).
            lane.quiet_until = max(lane.quiet_until, started + self.options.linger)
            if moved == 0:
                # Rows left that are not in flight may wait behind leased or backing-off rows of their device:
                # a settle frees them, an append brings new ones; either wakes the lane.
                event = lane.settled if lane.in_flight else lane.wake
                await self._rest(event, self.options.idle_poll)

    async def _rest(self, event: asyncio.Event, timeout: float) -> None:
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.01, timeout))
            except TimeoutError:
                pass

    # -- one cycle -------------------------------------------------------------------

    async def deliver_once(self, lane: _Lane | None = None) -> int:
        """Lease, send and settle one page (of one lane's target, or of any); how many rows it took (0: none)."""
        now = time.time()
        if lane is None:
            skip = [url for url, t in self._targets.items() if t.down_until > now]
            rows = await asyncio.to_thread(self.outbox.lease, self._page, skip_targets=skip)
        else:
            rows = await asyncio.to_thread(self.outbox.lease, self._page, target=lane.target)
        if not rows:
            self._m_depth.set(self.outbox.depth)
            return 0
        if lane is not None:
            lane.in_flight += len(rows)
        try:
            groups: dict[tuple[str, str, tuple[str, ...]], list[Leased]] = {}
            for row in rows:
                groups.setdefault((row.item.target, row.item.tenant, row.item.context), []).append(row)
            cycle = _Cycle()
            await asyncio.gather(*(self._deliver_group(key, group, cycle) for key, group in groups.items()))
            await asyncio.to_thread(self._settle, cycle)
        finally:
            if lane is not None:
                lane.in_flight -= len(rows)
                lane.settled.set()
        self._count(cycle)
        if self._on_dead_letter is not None:
            for row, problem in cycle.dead:
                await self._on_dead_letter(row, problem)
        return len(rows)

    def _settle(self, cycle: _Cycle) -> None:
        """Write the cycle's outcome to the outbox (a worker thread)."""
        if cycle.ack:
            self.outbox.ack([r.seq for r in cycle.ack])
        for row, problem in cycle.dead:
            self.outbox.dead_letter(row.seq, problem)
        by_delay: dict[tuple[float, str], list[int]] = {}
        for row, delay, error in cycle.retry:
            by_delay.setdefault((delay, error), []).append(row.seq)
        for (delay, error), seqs in by_delay.items():
            self.outbox.release(seqs, delay=delay, error=error)

    def _count(self, cycle: _Cycle) -> None:
        """The cycle's metrics and dead-letter log lines (in the loop: no metric is touched from two threads)."""
        now = time.time()
        if cycle.ack:
            self._m_delivered.inc(len(cycle.ack))
            observe = self._m_latency.observe
            for r in cycle.ack:
                observe(max(0.0, now - r.item.accepted_at))
        for row, problem in cycle.dead:
            self._m_dead.inc()
            log.warning("dead letter %s (device %s): %s", row.entity_id, row.item.device, problem.get("detail"))
        self._m_depth.set(self.outbox.depth)

    def _client(self, target: str) -> NgsiLdClient:
        if not target:
            return self._default
        client = self._clients.get(target)
        if client is None:
            client = self._clients[target] = self._factory(target)
        return client

    def _backoff(self, failures: int) -> float:
        return float(min(self.options.backoff_max, self.options.backoff_initial * (2 ** max(0, failures - 1))))

    async def _deliver_group(self, key: tuple[str, str, tuple[str, ...]], rows: list[Leased], cycle: _Cycle) -> None:
        target, tenant, context = key
        client = self._client(target)
        state = self._targets.setdefault(target, _Target())
        blocked_entities: set[str] = set()
        blocked_devices: set[str] = set()
        probe = _Probe()
        size = max(1, self.options.batch_size)
        for wave in _waves(rows, self.options.repeats):
            ready = [r for r in wave if not _blocked(r, cycle, blocked_entities, blocked_devices)]
            if not ready:
                continue
            try:
                await self._send_wave(client, _streams(ready, size), tenant, context, cycle, blocked_entities,
                                      blocked_devices, probe)
                if probe.suspects and not probe.ok and not await self._answers(client, tenant, context, probe):
                    raise probe.suspects[0][1]  # nothing gets through: the broker fails, not these rows
                await self._confirm(client, tenant, context, cycle, probe)
            except NgsiLdError as exc:  # the broker is away or failing: everything left waits
                state.failures += 1
                delay = self._backoff(state.failures)
                state.down_until = time.time() + delay
                self._m_errors.labels(kind="unavailable").inc()
                log.warning("broker %s unavailable (%s), retrying in %.1fs", target or client.base_url, exc.detail, delay)
                for r in rows:
                    if r.seq not in cycle.settled:
                        cycle.again(r, delay, exc.detail[:500])
                return
            self._poison(probe, cycle)
            state.failures = 0
            state.down_until = 0.0

    async def _send_wave(self, client: NgsiLdClient, streams: list[list[list[Leased]]], tenant: str,
                         context: tuple[str, ...], cycle: _Cycle, blocked_entities: set[str],
                         blocked_devices: set[str], probe: _Probe) -> None:
        """Send a wave's streams, up to `in_flight` requests at once; each stream's requests one after another.

        Every request is answered before this returns or raises, so no row is settled twice (see Requests
        in flight); the first "broker away" error is raised then."""
        gate = asyncio.Semaphore(max(1, self.options.in_flight))
        away: list[NgsiLdError] = []  # the first "broker away": no further request starts

        async def stream(chunks: list[list[Leased]]) -> None:
            for chunk in chunks:
                async with gate:
                    if away:
                        return
                    if blocked_entities or blocked_devices:  # held back since the wave began: those rows wait
                        chunk = [r for r in chunk if not _blocked(r, cycle, blocked_entities, blocked_devices)]
                    if chunk:
                        try:
                            await self._send(client, chunk, tenant, context, cycle, blocked_entities,
                                             blocked_devices, probe)
                        except NgsiLdError as exc:
                            away.append(exc)
                            return

        outcomes = await asyncio.gather(*(stream(s) for s in streams), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if away:
            raise away[0]

    async def _answers(self, client: NgsiLdClient, tenant: str, context: tuple[str, ...], probe: _Probe) -> bool:
        """Whether the broker answers a harmless read (the first suspect's entity): 2xx or 4xx, not 5xx."""
        try:
            await client.get_entity(probe.suspects[0][0].entity_id, tenant=tenant, context=list(context))
        except NgsiLdError as exc:
            return not is_retryable(exc)
        return True

    async def _confirm(self, client: NgsiLdClient, tenant: str, context: tuple[str, ...], cycle: _Cycle,
                       probe: _Probe) -> None:
        """Send each suspect alone once more, now that the broker is known to work: a broker that came back
        mid-cycle takes it; one that answers 500 again refuses that row (a poison refusal)."""
        suspects, probe.suspects = probe.suspects, []
        for row, _ in suspects:
            try:
                outcome = await client.write_json([row.entity_json], [row.entity_id], mode=self.options.mode,
                                                  tenant=tenant, context=list(context))
            except NgsiLdError as exc:
                if _answered_500(exc):
                    probe.suspects.append((row, exc))
                    continue
                raise
            error = dict(outcome.errors).get(row.entity_id)
            if error is None:
                cycle.done(row)
            elif is_retryable(error):
                cycle.again(row, self._backoff(row.attempts + 1), error.detail[:500])
            else:
                self._m_errors.labels(kind="rejected").inc()
                cycle.refuse(row, error.to_problem())

    def _poison(self, probe: _Probe, cycle: _Cycle) -> None:
        """Rows the broker answered 500 alone while others got through: retry with backoff, then dead-letter."""
        for row, error in probe.suspects:
            self._m_errors.labels(kind="poison").inc()
            if row.attempts + 1 >= self.options.poison_attempts:
                problem = error.to_problem()
                problem.setdefault("detail", error.detail)
                cycle.refuse(row, {**problem, "attempts": row.attempts + 1})
            else:
                log.warning("broker answered 500 for %s (device %s) alone, attempt %d of %d: %s", row.entity_id,
                            row.item.device, row.attempts + 1, self.options.poison_attempts, error.detail[:200])
                cycle.again(row, self._backoff(row.attempts + 1), error.detail[:500])
        probe.suspects.clear()

    async def _send(self, client: NgsiLdClient, rows: Sequence[Leased], tenant: str, context: tuple[str, ...],
                    cycle: _Cycle, blocked_entities: set[str], blocked_devices: set[str], probe: _Probe) -> None:
        """Send one wave; raise only when the broker as a whole fails (retryable)."""
        try:
            outcome = await client.write_json([r.entity_json for r in rows], [r.entity_id for r in rows],
                                              mode=self.options.mode, tenant=tenant, context=list(context))
        except NgsiLdError as exc:
            answered_500 = _answered_500(exc)
            if is_retryable(exc) and not (answered_500 and (probe.ok or min(r.attempts for r in rows) >= 1)):
                raise
            if len(rows) == 1:
                if answered_500:  # refused alone; poison only if others get through (see _poison)
                    probe.suspects.append((rows[0], exc))
                    blocked_entities.add(rows[0].entity_id)
                    blocked_devices.add(rows[0].item.device)
                    return
                self._m_errors.labels(kind="rejected").inc()  # the whole request failed for this one entity
                cycle.refuse(rows[0], exc.to_problem())
                return
            half = len(rows) // 2
            await self._send(client, rows[:half], tenant, context, cycle, blocked_entities, blocked_devices, probe)
            await self._send(client, rows[half:], tenant, context, cycle, blocked_entities, blocked_devices, probe)
            return
        probe.ok += 1
        errors = dict(outcome.errors)
        if errors and len(rows) > 1:
            sent = Counter(r.entity_id for r in rows)
            # Which instance the broker refused is not told: each goes alone (at least once), in order. A
            # retryable error leaves them all to be retried together, in order, as below.
            again = [r for r in rows if sent[r.entity_id] > 1 and r.entity_id in errors
                     and not is_retryable(errors[r.entity_id])]
            for row in again:
                if not _blocked(row, cycle, blocked_entities, blocked_devices):
                    await self._send(client, [row], tenant, context, cycle, blocked_entities, blocked_devices, probe)
            if again:
                rows = [r for r in rows if r.seq not in cycle.settled]
        for row in rows:
            error = errors.get(row.entity_id)
            if error is None:
                cycle.done(row)
            elif is_retryable(error):
                self._m_errors.labels(kind="entity_retry").inc()
                blocked_entities.add(row.entity_id)
                blocked_devices.add(row.item.device)
                cycle.again(row, self._backoff(row.attempts + 1), error.detail[:500])
            else:
                self._m_errors.labels(kind="rejected").inc()
                cycle.refuse(row, error.to_problem())


@dataclass(slots=True)
class _Probe:
    """What one group's requests showed: how many got through, which rows the broker answered 500 alone."""

    ok: int = 0
    suspects: list[tuple[Leased, NgsiLdError]] = field(default_factory=list)


def _answered_500(error: NgsiLdError) -> bool:
    """Whether the broker answered this request with an HTTP 500 (not: unreachable, 502-504, 429)."""
    return getattr(error, "http_status", None) == 500


def _blocked(row: Leased, cycle: _Cycle, entities: set[str], devices: set[str]) -> bool:
    """Whether an earlier measure of the row's entity or device is being retried (the row then waits too)."""
    if row.entity_id in entities or row.item.device in devices:
        cycle.again(row, 0.0, "an earlier measure of its device is being retried")
        return True
    return False


def _waves(rows: Sequence[Leased], repeats: int = 1) -> list[list[Leased]]:
    """Split rows (in order) so that each entity id appears at most `repeats` times per wave, order kept."""
    waves: list[list[Leased]] = []
    seen: dict[str, int] = {}
    repeats = max(1, repeats)
    for row in rows:
        eid = row.entity_id
        n = seen.get(eid, 0) // repeats
        seen[eid] = seen.get(eid, 0) + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(row)
    return waves


def _streams(rows: Sequence[Leased], size: int) -> list[list[list[Leased]]]:
    """Split a wave (rows in order) into requests of at most `size` rows that may be in flight at once.

    Each entity's rows go in one request, or, when there are more than `size` of them, in consecutive
    requests of one stream (sent one after another); the rows keep their order within each request."""
    counts = Counter(r.entity_id for r in rows)
    where: dict[str, int] = {}  # entity -> its request (index into `requests`)
    requests: list[list[Leased]] = []
    room = 0  # rows left in the last shared request
    big: dict[str, list[Leased]] = {}  # entities with more than `size` rows: a stream of their own
    for row in rows:
        eid = row.entity_id
        n = counts[eid]
        if n > size:
            big.setdefault(eid, []).append(row)
            continue
        index = where.get(eid)
        if index is None:
            if n > room:
                requests.append([])
                room = size
            index = where[eid] = len(requests) - 1
            room -= n
        requests[index].append(row)
    streams = [[request] for request in requests]
    streams += [[own[i:i + size] for i in range(0, len(own), size)] for own in big.values()]
    return streams
