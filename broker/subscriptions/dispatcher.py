"""The dispatcher: follows the store's change log and turns matching changes into queued notifications.

For each page of change records it matches every active subscription of
the record's tenant, renders the notifications, and enqueues them together
with the new cursor in one transaction of the subscription storage: after
a crash it resumes exactly where the queue stops, never losing a change
nor queueing one twice.

Subscriptions are read from the database, never cached blindly: a version
number bumped by every subscription write is checked before and after each
page, so a subscription written by any process is seen by the next page.
Periodic subscriptions (timeInterval) are served by `periodic`, which
queries the store for the subscribed entities when a run is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from broker.service.view import View, linked_objects
from broker.store.base import ChangeRecord, Doc, Store, StoredEntity
from broker.subscriptions.matching import DELETED, Compiled, Trigger, compile_subscription
from broker.subscriptions.render import changed_entity, envelope, render_entity, view_of
from broker.subscriptions.storage import StoredSubscription, SubscriptionStorage
from models.context import Context, ContextResolver
from models.times import now_utc, utc_iso

log = logging.getLogger("broker.subscriptions")

PAGE = 500
"""Change records read at a time."""

IDLE_CURSOR_EVERY = 1.0
"""Seconds between two stores of the cursor moved past records while there is no subscription."""


class Dispatcher:
    """Follows the change log for one broker process (while it holds the lease).

    `cursor` is the last change-log seq whose notifications are queued; the
    change-log trim reads it (BrokerState.change_consumers).
    """

    def __init__(self, store: Store, storage: SubscriptionStorage, resolver: ContextResolver,
                 wake: Callable[[str, str], None]) -> None:
        self.store = store
        self.storage = storage
        self.resolver = resolver
        self.wake = wake
        self.cursor = 0
        self._version: int | None = None
        self._subs: dict[str, list[Compiled]] = {}
        self._notify_ctx: dict[tuple[str, str], tuple[Any, Context]] = {}
        self._next_periodic_check = 0.0
        self._saved = 0  # the cursor as last stored
        self._saved_at = 0.0  # when (time.monotonic)

    # ---------------------------------------------------------------- subscriptions

    async def _compile(self, stored: StoredSubscription) -> Compiled | None:
        try:
            # the dispatcher's own compilations are no uses of the @contexts (their numberOfHits, clause 5.13)
            ctx = await self.resolver.aresolve(stored.context, hit=False)
            compiled = compile_subscription(stored, ctx)
            value = stored.doc.get("jsonldContext") or stored.context
            notify_ctx = ctx if value == stored.context else await self.resolver.aresolve(value, hit=False)
        except Exception:  # a context gone unavailable must not stop every other subscription
            log.exception("subscription %s cannot be compiled; skipped until it changes", stored.id)
            return None
        self._notify_ctx[(stored.tenant, stored.id)] = (value, notify_ctx)
        return compiled

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the subscriptions when any changed; whether they did."""
        version = await self.storage.version()
        if not force and version == self._version:
            return False
        subs: dict[str, list[Compiled]] = {}
        self._notify_ctx.clear()
        for stored in await self.storage.all():
            compiled = await self._compile(stored)
            if compiled is not None:
                subs.setdefault(stored.tenant, []).append(compiled)
        self._subs, self._version = subs, version
        return True

    async def start(self) -> None:
        """Load the cursor; a new database starts at the end of the log (no history is notified)."""
        cursor = await self.storage.cursor()
        if cursor is None:
            cursor = await self.store.last_change_seq()
            await self.storage.enqueue([], cursor)
        self.cursor = self._saved = cursor
        self._saved_at = time.monotonic()
        await self.refresh(force=True)

    # ---------------------------------------------------------------- change log

    async def _linked(self, tenant: str, roots: list[Doc], view: View) -> dict[str, StoredEntity]:
        """The stored entities reachable from `roots` through Relationships, up to `view.join_level` hops
        (clause 4.5.23), as they are now; nothing without `notification.join`."""
        if view.join is None:
            return {}
        found: dict[str, StoredEntity] = {}
        seen = {r.get("id") for r in roots}
        frontier = roots
        for _ in range(view.join_level):
            wanted = list(dict.fromkeys(t for d in frontier for t in linked_objects(d) if t not in seen))
            if not wanted:
                break
            seen.update(wanted)
            got = await self.store.get_many(tenant, wanted)
            found.update(got)
            frontier = [e.doc for e in got.values()]
        return found

    async def _render(self, compiled: Compiled, record: ChangeRecord, trigger: Trigger, notified_at: str) -> bytes:
        doc = compiled.doc
        value, ctx = self._notify_ctx[(compiled.stored.tenant, compiled.stored.id)]
        entity, created, modified = changed_entity(doc, record, trigger)
        deleted = frozenset(a for a, k in trigger.changed.items() if DELETED in k and a not in (record.after or {}))
        view = view_of(doc, ctx)
        rendered = render_entity(doc, view, ctx, entity, created, modified,
                                 linked=await self._linked(record.tenant, [entity], view),
                                 deleted_at=record.at if trigger.reason == "entityDeleted" else None,
                                 deleted_attrs=deleted)
        return envelope(doc, value, rendered, notified_at)

    async def match_page(self, records: list[ChangeRecord], now: datetime) -> list[tuple[str, str, bytes]]:
        """The notifications of a page of records, in log order."""
        items: list[tuple[str, str, bytes]] = []
        notified_at = utc_iso(now)
        for record in records:
            for compiled in self._subs.get(record.tenant, ()):
                if not compiled.is_active(now):
                    continue
                try:
                    trigger = compiled.match(record)
                    if trigger is not None:
                        body = await self._render(compiled, record, trigger, notified_at)
                        items.append((record.tenant, compiled.stored.id, body))
                except Exception:
                    log.exception("subscription %s failed on change %s", compiled.stored.id, record.seq)
        return items

    async def step(self) -> int:
        """Dispatch one page of the change log; how many records it held."""
        if not self._subs:
            # No subscription anywhere (as of the last refresh): nothing can match, so skip reading and
            # decoding the records (both images of each) and only move the cursor, at most a page at a
            # time. The refresh after reading the log's end sees a subscription written before it (the
            # one before it, on every step, was redundant with the previous step's); the page is then
            # read and matched as usual. Nothing new in the log: nothing to refresh for.
            last = min(await self.store.last_change_seq(), self.cursor + PAGE)
            if last <= self.cursor:
                return 0
            if not await self.refresh() and not self._subs:
                count, self.cursor = last - self.cursor, last
                await self._save_idle_cursor()
                return count
        else:
            await self.refresh()
        records = await self.store.changes_after(self.cursor, PAGE)
        if not records:
            return 0
        if await self.refresh():
            pass  # a subscription changed while the page was read: matched with the fresh set
        items = await self.match_page(records, now_utc())
        last = records[-1].seq
        await self.storage.enqueue(items, last)
        self.cursor = self._saved = last
        self._saved_at = time.monotonic()
        for tenant, sub_id in dict.fromkeys((t, s) for t, s, _ in items):
            self.wake(tenant, sub_id)
        return len(records)

    async def run(self, poll: float = 0.05) -> None:
        """Follow the log until cancelled."""
        await self.start()
        while True:
            try:
                count = await self.step()
                if time.monotonic() >= self._next_periodic_check:
                    self._next_periodic_check = time.monotonic() + 0.5
                    await self.periodic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher step failed; retrying")
                count = 0
                await asyncio.sleep(1.0)
            if count < PAGE:
                await asyncio.sleep(poll)

    async def _save_idle_cursor(self) -> None:
        """Store the cursor moved past records no subscription could match, at most every IDLE_CURSOR_EVERY s.

        Each store was a transaction of its own, a commit and its WAL flush, on every step: about 15 a
        second under a PATCH load with no subscription (issue 16, pgpatch20). A cursor stored late only
        makes a restarted dispatcher read those records again: with no subscription they match nothing,
        and a subscription created since ignores the changes logged before it (its created_seq). The
        change-log trim reads the cursor in memory (BrokerState.change_consumers), which is the same.
        """
        now = time.monotonic()
        if self.cursor != self._saved and now - self._saved_at >= IDLE_CURSOR_EVERY:
            await self.storage.enqueue([], self.cursor)
            self._saved, self._saved_at = self.cursor, now

    # ---------------------------------------------------------------- timeInterval

    async def periodic(self) -> None:
        """Send the notifications of every due timeInterval subscription (clause 5.8.6)."""
        now = time.time()
        for tenant, sub_id in await self.storage.due_periodic(now):
            compiled = next((c for c in self._subs.get(tenant, ()) if c.stored.id == sub_id), None)
            if compiled is None:
                await self.refresh(force=True)
                compiled = next((c for c in self._subs.get(tenant, ()) if c.stored.id == sub_id), None)
                if compiled is None:
                    continue
            await self.storage.set_next_periodic(tenant, sub_id, now + float(compiled.doc["timeInterval"]))
            moment = now_utc()
            if not compiled.is_active(moment):
                continue
            page = await self.store.query(tenant, compiled.filter, limit=10_000, offset=0, count=False)
            if not page.entities:
                continue  # "If there are no matching Entities, no Notification is sent."
            value, ctx = self._notify_ctx[(tenant, sub_id)]
            view = view_of(compiled.doc, ctx)
            linked = await self._linked(tenant, [e.doc for e in page.entities], view)
            entities: list[dict[str, Any]] = []
            appended: dict[Any, dict[str, Any]] = {}  # flat: each Linked Entity once, after the entities
            for e in page.entities:
                first, *extra = render_entity(compiled.doc, view, ctx, e.doc, e.created_at, e.modified_at,
                                              linked=linked)
                entities.append(first)
                appended.update((x.get("id"), x) for x in extra if x.get("id") not in appended)
            shown = {e.doc["id"] for e in page.entities}
            entities += [x for i, x in appended.items() if i not in shown]
            await self.storage.enqueue([(tenant, sub_id, envelope(compiled.doc, value, entities, utc_iso(moment)))], None)
            self.wake(tenant, sub_id)
