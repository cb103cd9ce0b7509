"""What the subscription machinery stores, beside the entities, in the same database.

    subscriptions       (tenant, id) -> the Subscription document (terms), its @context value,
                        created_seq (the change log position at creation: older changes never
                        notify it), the notification status members, next periodic run
    sub_queue           the durable notification queue: qid (global order), tenant, sub_id,
                        body (the rendered Notification), attempts, next_attempt (epoch s)
    sub_meta            'cursor' (the last change-log seq dispatched), 'version' (bumped on
                        every subscription write, so every process sees changes at once)
    sub_lease           which broker process dispatches and delivers, until when

`enqueue` writes queue rows and the cursor in ONE transaction: a crash
between the two cannot lose or duplicate a notification at the dispatcher.
Delivery acknowledgements may be batched: a notification acknowledged
late is sent again after a crash, which at-least-once delivery allows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.vocabulary import Doc
from storage.migrate import Schema


@dataclass(slots=True)
class StoredSubscription:
    """A subscription document with what the broker keeps beside it."""

    tenant: str
    doc: Doc
    context: Any
    created_seq: int
    stats: Doc
    """timesSent, timesFailed, lastNotification, lastSuccess, lastFailure, status (ok/failed)"""

    @property
    def id(self) -> str:
        return str(self.doc["id"])


@dataclass(slots=True)
class QueueItem:
    """One notification waiting for delivery."""

    qid: int
    tenant: str
    sub_id: str
    body: bytes
    attempts: int
    next_attempt: float


@dataclass(slots=True)
class Outcome:
    """The result of one delivery attempt, applied to the queue and to the status members."""

    tenant: str
    sub_id: str
    qid: int
    ok: bool
    at: str
    attempts: int = 0
    next_attempt: float = 0.0


class SubscriptionStorage(ABC):
    """Durable state of subscriptions and notifications; every method is a coroutine."""

    tables: Schema
    """Its tables, for its database's migration runner (storage.migrate)."""

    @abstractmethod
    async def open(self) -> None:
        """Connect; create the tables when absent."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    # ---------------------------------------------------------------- subscriptions

    @abstractmethod
    async def create(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        """Insert; False when (tenant, id) exists."""

    @abstractmethod
    async def get(self, tenant: str, sub_id: str) -> StoredSubscription | None:
        """One subscription, or None."""

    @abstractmethod
    async def page(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        """A page of a tenant's subscriptions by id, and their total count."""

    @abstractmethod
    async def replace(self, sub: StoredSubscription, next_periodic: float | None) -> bool:
        """Write a changed document and context; False when it no longer exists."""

    @abstractmethod
    async def delete(self, tenant: str, sub_id: str) -> bool:
        """Delete a subscription and its queued notifications; whether it existed."""

    @abstractmethod
    async def all(self) -> list[StoredSubscription]:
        """Every subscription of every tenant (the dispatcher's view)."""

    @abstractmethod
    async def version(self) -> int:
        """A number that changes whenever any subscription is written."""

    @abstractmethod
    async def due_periodic(self, now: float) -> list[tuple[str, str]]:
        """(tenant, id) of timeInterval subscriptions whose next run is due."""

    @abstractmethod
    async def set_next_periodic(self, tenant: str, sub_id: str, when: float) -> None:
        """When the next periodic notification of a subscription is due."""

    # ---------------------------------------------------------------- queue and cursor

    @abstractmethod
    async def cursor(self) -> int | None:
        """The last change-log seq dispatched, None before the first run."""

    @abstractmethod
    async def enqueue(self, items: Sequence[tuple[str, str, bytes]], cursor: int | None) -> None:
        """Append (tenant, sub_id, body) notifications and, in the same transaction, move the cursor."""

    @abstractmethod
    async def pending(self) -> list[tuple[str, str]]:
        """(tenant, sub_id) of every subscription with queued notifications."""

    @abstractmethod
    async def head(self, tenant: str, sub_id: str, limit: int) -> list[QueueItem]:
        """The oldest queued notifications of one subscription, in order."""

    @abstractmethod
    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Apply delivery outcomes: delete delivered items, reschedule failed ones, update status members."""

    @abstractmethod
    async def queue_size(self) -> int:
        """How many notifications wait (benchmarks, tests)."""

    # ---------------------------------------------------------------- lease

    @abstractmethod
    async def acquire_lease(self, owner: str, now: float, ttl: float) -> bool:
        """Take or renew the dispatcher lease; whether `owner` holds it now."""

    @abstractmethod
    async def release_lease(self, owner: str) -> None:
        """Give the lease up (clean shutdown)."""


def apply_stats(stats: Doc, outcome: Outcome) -> Doc:
    """The status members after one attempt (clause 5.8.6)."""
    out = dict(stats)
    out["timesSent"] = int(out.get("timesSent", 0)) + 1
    out["lastNotification"] = outcome.at
    if outcome.ok:
        out["lastSuccess"] = outcome.at
        out["status"] = "ok"
    else:
        out["timesFailed"] = int(out.get("timesFailed", 0)) + 1
        out["lastFailure"] = outcome.at
        out["status"] = "failed"
    return out
