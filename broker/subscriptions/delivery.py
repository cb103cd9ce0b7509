"""Delivery: drains the notification queue, one worker per subscription, in queue order.

One notification in flight per subscription keeps each subscriber's order;
subscriptions deliver concurrently. A failed attempt (connection refused,
timeout, a non-2xx answer, an unacknowledged MQTT publish) leaves the
notification at the head of its queue with an exponential backoff (capped,
never shorter than the endpoint's cooldown); later notifications of that
subscription wait behind it. Outcomes update the status members of
clause 5.8.6 (timesSent, timesFailed, lastNotification, lastSuccess,
lastFailure, status ok/failed); they are written in batches, at the latest
before the worker reads its queue again, so a crash can only resend.

Bindings: HTTP POST (clause 6.3.8) through one httpx AsyncClient, with
Link / NGSILD-Tenant / receiverInfo headers; MQTT (clause 7.2) through a
paho client per broker address, the body wrapped as {"metadata", "body"}.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import orjson
from pydantic import BeforeValidator

from broker.subscriptions.model import status_of
from broker.subscriptions.mqtt import MqttPublisher
from broker.subscriptions.storage import Outcome, QueueItem, StoredSubscription, SubscriptionStorage
from models.times import now_utc, utc_iso
from web.settings import EnvFloat, EnvSettings, load, var, whole_number

log = logging.getLogger("broker.subscriptions")


def _batch(raw: object) -> object:
    value = whole_number(raw)
    return max(1, value) if isinstance(value, int) else value  # 0 and below mean one, as before: never an error


class DeliveryEnv(EnvSettings):
    """The variables of `DeliverySettings` (pydantic-settings, web/settings.py)."""

    retry_initial: EnvFloat = var("METROPOLE_NOTIFY_RETRY_INITIAL")
    retry_factor: EnvFloat = var("METROPOLE_NOTIFY_RETRY_FACTOR")
    retry_max: EnvFloat = var("METROPOLE_NOTIFY_RETRY_MAX")
    timeout: EnvFloat = var("METROPOLE_NOTIFY_TIMEOUT")
    max_batch: Annotated[int, BeforeValidator(_batch)] = var("METROPOLE_NOTIFY_MAX_BATCH")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Retry and batching policy (METROPOLE_NOTIFY_* variables)."""

    retry_initial: float = 0.5
    retry_factor: float = 2.0
    retry_max: float = 30.0
    timeout: float = 10.0
    max_batch: int = 50
    """At most this many queued notifications of one subscription merged into one (data concatenated,
    in order) when a backlog exists; a receiver that keeps up gets one notification per change.
    Without it, a slow receiver would hold each change for a round trip of its own."""

    @classmethod
    def from_env(cls) -> DeliverySettings:
        """Defaults overridden by METROPOLE_NOTIFY_* (DeliveryEnv); a bad value is a ValueError naming it."""
        return cls(**load(DeliveryEnv))

    def backoff(self, attempts: int, cooldown_ms: float | None) -> float:
        """Seconds to wait before attempt number `attempts + 1`."""
        delay = min(self.retry_max, self.retry_initial * self.retry_factor ** max(0, attempts - 1))
        return max(delay, (cooldown_ms or 0) / 1000.0)


def merge_items(items: list[QueueItem]) -> bytes | None:
    """Several queued notifications of one subscription as one (their data concatenated, in order): the
    entity arrays joined, or the features of GeoJSON FeatureCollections (format application/geo+json,
    clause 5.3.1); None when they cannot be joined, and each then goes alone."""
    first = orjson.loads(items[0].body)
    data = first["notification"]["data"]
    for item in items[1:]:
        more = orjson.loads(item.body)["notification"]["data"]
        if isinstance(data, list) and isinstance(more, list):
            data.extend(more)
        elif (isinstance(data, dict) and isinstance(more, dict) and isinstance(data.get("features"), list)
              and isinstance(more.get("features"), list)):
            data["features"].extend(more["features"])
        else:
            return None
    return orjson.dumps(first)


class Delivery:
    """Per-subscription delivery workers of one broker process."""

    def __init__(self, storage: SubscriptionStorage, settings: DeliverySettings | None = None) -> None:
        self.storage = storage
        self.settings = settings or DeliverySettings.from_env()
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self._last_sent: dict[tuple[str, str], float] = {}
        self._inflight: dict[tuple[str, str], asyncio.Event] = {}
        self._outcomes: list[Outcome] = []
        self._flush_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        self._mqtt = MqttPublisher()
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.settings.timeout,
                                       limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        for tenant, sub_id in await self.storage.pending():
            self.wake(tenant, sub_id)

    async def stop(self) -> None:
        self._closed = True
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()
        await self.flush()
        if self._http is not None:
            await self._http.aclose()
        await asyncio.to_thread(self._mqtt.close)

    async def run(self, rescan: float = 2.0) -> None:
        """Flush outcomes often; rescan the queue now and then (items of other processes, paused subscriptions)."""
        await self.start()
        last_scan = time.monotonic()
        try:
            while True:
                await asyncio.sleep(0.05)
                await self.flush()
                if time.monotonic() - last_scan > rescan:
                    last_scan = time.monotonic()
                    for tenant, sub_id in await self.storage.pending():
                        self.wake(tenant, sub_id)
        finally:
            await self.stop()

    async def settle(self, tenant: str, sub_id: str, timeout: float = 2.0) -> None:
        """Let the status members show every attempt already answered: wait (bounded) for the one in flight, flush.

        A receiver may read the subscription as soon as it has answered a
        notification; the attempt's outcome must then be visible (clause 5.8.6).
        """
        attempt = self._inflight.get((tenant, sub_id))
        if attempt is not None:
            try:
                await asyncio.wait_for(attempt.wait(), timeout)
            except TimeoutError:
                pass  # a receiver still answering: its outcome is not known yet
        await self.flush()

    def wake(self, tenant: str, sub_id: str) -> None:
        """Make sure a worker drains this subscription's queue."""
        if self._closed:
            return
        key = (tenant, sub_id)
        task = self._workers.get(key)
        if task is not None and not task.done():
            self._again.add(key)
            return
        self._workers[key] = asyncio.create_task(self._worker(key), name=f"notify {sub_id}")

    async def flush(self) -> None:
        """Write the outcomes gathered so far."""
        async with self._flush_lock:
            if not self._outcomes:
                return
            outcomes, self._outcomes = self._outcomes, []
            try:
                await self.storage.record(outcomes)
            except Exception:
                self._outcomes[:0] = outcomes
                raise

    # ---------------------------------------------------------------- workers

    async def _worker(self, key: tuple[str, str]) -> None:
        tenant, sub_id = key
        try:
            while True:
                await self.flush()
                items = await self.storage.head(tenant, sub_id, 100)
                if not items:
                    if key in self._again:
                        self._again.discard(key)
                        continue
                    return
                self._again.discard(key)
                sub = await self.storage.get(tenant, sub_id)
                if sub is None or status_of(sub.doc) != "active":
                    return  # deleted (its queue went with it), or paused/expired: rescanned later
                await self._drain(sub, items)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery worker of %s failed", sub_id)
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]

    async def _drain(self, sub: StoredSubscription, items: list[QueueItem]) -> None:
        key = (sub.tenant, sub.id)
        throttling = float(sub.doc.get("throttling") or 0)
        cooldown = (sub.doc.get("notification") or {}).get("endpoint", {}).get("cooldown")
        i = 0
        while i < len(items):
            head = items[i]
            wait = head.next_attempt - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if throttling:
                wait = self._last_sent.get(key, 0.0) + throttling - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            group = [head]
            while (len(group) < self.settings.max_batch and i + len(group) < len(items)
                   and items[i + len(group)].attempts == 0):
                group.append(items[i + len(group)])
            merged = merge_items(group) if len(group) > 1 else None
            if merged is None:
                group = [head]
            body = head.body if merged is None else merged
            attempt = self._inflight[key] = asyncio.Event()
            try:
                ok = await self.send(sub, body)
                self._last_sent[key] = time.monotonic()
                at = utc_iso(now_utc())
                if ok:
                    self._outcomes.extend(Outcome(sub.tenant, sub.id, g.qid, True, at) for g in group)
                    i += len(group)
                    continue
                attempts = head.attempts + 1
                self._outcomes.append(Outcome(sub.tenant, sub.id, head.qid, False, at, attempts,
                                              time.time() + self.settings.backoff(attempts, cooldown)))
                return  # re-read the queue: the head now carries its next attempt time
            finally:
                attempt.set()
                if self._inflight.get(key) is attempt:
                    del self._inflight[key]

    # ---------------------------------------------------------------- bindings

    async def send(self, sub: StoredSubscription, body: bytes) -> bool:
        """One delivery attempt; whether the receiver took it."""
        message = orjson.loads(body)
        endpoint = sub.doc["notification"]["endpoint"]
        uri: str = endpoint["uri"]
        timeout = float(endpoint["timeout"]) / 1000.0 if endpoint.get("timeout") else self.settings.timeout
        receiver = {kv["key"]: kv["value"] for kv in endpoint.get("receiverInfo") or ()}
        try:
            if uri.lower().startswith("mqtt"):
                notifier = {kv["key"]: kv["value"] for kv in endpoint.get("notifierInfo") or ()}
                metadata: dict[str, Any] = {"Content-Type": message["contentType"], **receiver}
                if message.get("link") and message["contentType"] != "application/ld+json":
                    metadata["Link"] = message["link"]
                if sub.tenant:
                    metadata["NGSILD-Tenant"] = sub.tenant
                payload = orjson.dumps({"metadata": metadata, "body": message["notification"]})
                return await asyncio.to_thread(self._mqtt.publish, uri, payload, notifier, timeout)
            return await self._post(uri, message, receiver, sub.tenant, timeout)
        except Exception as exc:  # noqa: BLE001 - every failure of a receiver is a failed attempt, never a crash
            log.info("notification of %s to %s failed: %s", sub.id, uri, exc)
            return False

    async def _post(self, uri: str, message: dict[str, Any], receiver: dict[str, str], tenant: str,
                    timeout: float) -> bool:
        assert self._http is not None
        headers = {"Content-Type": message["contentType"], **receiver}
        if message.get("link"):
            headers["Link"] = message["link"]
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        response = await self._http.post(uri, content=orjson.dumps(message["notification"]), headers=headers,
                                         timeout=timeout)
        if 200 <= response.status_code < 300:
            return True
        log.info("notification to %s answered %s", uri, response.status_code)
        return False
