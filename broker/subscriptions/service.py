"""Subscription operations (clauses 5.8.1-5.8.5) over the subscription storage.

The subscription is kept in the terms its creator wrote with the @context
of the request; a reader with another @context gets the same terms
re-expressed in its own (`present`).
"""

from __future__ import annotations

import time
from typing import Any

from broker import limits
from broker.store.base import Store
from broker.subscriptions.matching import compile_subscription
from broker.subscriptions.model import DEFAULT_TRIGGERS, merge, new_subscription, recontext, status_of
from broker.subscriptions.storage import StoredSubscription, SubscriptionStorage
from models.context import CORE_CONTEXT_URL, Context, ContextResolver
from models.errors import AlreadyExists, BadRequestData, InvalidRequest, NonexistentTenant, ResourceNotFound
from models.times import now_utc, utc_iso
from models.validation import check_uri

STAT_MEMBERS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure", "status")


def _initial_context(value: Any) -> str | None:
    """The jsonldContext a subscription gets when it names none (clause 5.8.1.4)."""
    if value is None:
        return CORE_CONTEXT_URL
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None  # an inline or several-item context gets a URL of its own: SubscriptionService._implicit_context


def _next_periodic(doc: dict[str, Any]) -> float | None:
    # the first periodic notification goes out at once, then every timeInterval seconds
    return time.time() if doc.get("timeInterval") else None


class SubscriptionService:
    """Create, retrieve, query, update and delete subscriptions."""

    def __init__(self, storage: SubscriptionStorage, store: Store, resolver: ContextResolver) -> None:
        self.storage = storage
        self.store = store
        self.resolver = resolver

    async def _check(self, stored: StoredSubscription, ctx: Context) -> None:
        """Compile as the dispatcher will, so that what cannot be matched is refused now."""
        try:
            compile_subscription(stored, ctx)
        except InvalidRequest as exc:
            raise BadRequestData(exc.detail) from None
        if stored.doc.get("jsonldContext"):
            await self.resolver.aresolve(stored.doc["jsonldContext"])  # LdContextNotAvailable, BadRequestData

    async def _implicit_context(self, value: Any) -> str:
        """Host an inline or several-item @context as an ImplicitlyCreated one; its URL (clause 5.13.1).

        Notifications in application/json link their @context, so it needs a URL of its own; it is
        kept in the store like a hosted one, so that it survives a restart.
        """
        document = {"@context": value}
        local_id = await self.resolver.ahost(document, implicit=True)
        await self.store.put_context(local_id, document, "ImplicitlyCreated", utc_iso(now_utc()))
        return self.resolver.url_of(local_id)

    async def create(self, tenant: str, body: Any, context_value: Any, ctx: Context) -> str:
        """Create Subscription (5.8.1): the new id; AlreadyExists, BadRequestData."""
        doc = new_subscription(body)
        if "jsonldContext" not in doc:
            initial = _initial_context(context_value)
            if initial is None:
                initial = await self._implicit_context(context_value)
            doc["jsonldContext"] = initial
        created_seq = await self.store.last_change_seq()
        stored = StoredSubscription(tenant, doc, context_value, created_seq, {})
        await self._check(stored, ctx)
        bound = limits.current().max_subscriptions
        if (await self.storage.page(tenant, 1, 0))[1] >= bound:
            raise BadRequestData(f"the tenant holds {bound} subscriptions, the most allowed "
                                 "(METROPOLE_BROKER_MAX_SUBSCRIPTIONS); delete one first")
        await self.store.ensure_tenant(tenant)
        if not await self.storage.create(stored, _next_periodic(doc)):
            raise AlreadyExists(f"subscription {doc['id']} already exists")
        return str(doc["id"])

    async def get(self, tenant: str, sub_id: str) -> StoredSubscription:
        """Retrieve Subscription (5.8.3): ResourceNotFound when absent."""
        check_uri(sub_id, "subscription id")
        stored = await self.storage.get(tenant, sub_id)
        if stored is None:
            if tenant and not await self.store.has_tenant(tenant):
                raise NonexistentTenant(f"tenant {tenant!r} does not exist")
            raise ResourceNotFound(f"subscription {sub_id} not found")
        return stored

    async def query(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        """Query Subscriptions (5.8.4): a page and the total count."""
        if tenant and not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")
        return await self.storage.page(tenant, limit, offset)

    async def update(self, tenant: str, sub_id: str, fragment: Any, context_value: Any, ctx: Context) -> None:
        """Update Subscription (5.8.2): merge the fragment, status follows isActive/expiresAt."""
        stored = await self.get(tenant, sub_id)
        own = await self.resolver.aresolve(stored.context)
        rename = None if context_value == stored.context else (lambda frag: recontext(frag, ctx, own))
        doc = merge(stored.doc, fragment, rename)
        updated = StoredSubscription(tenant, doc, stored.context, stored.created_seq, stored.stats)
        await self._check(updated, own)
        if not await self.storage.replace(updated, _next_periodic(doc)):
            raise ResourceNotFound(f"subscription {sub_id} not found")

    async def delete(self, tenant: str, sub_id: str) -> None:
        """Delete Subscription (5.8.5): its queued notifications go with it."""
        check_uri(sub_id, "subscription id")
        if not await self.storage.delete(tenant, sub_id):
            if tenant and not await self.store.has_tenant(tenant):
                raise NonexistentTenant(f"tenant {tenant!r} does not exist")
            raise ResourceNotFound(f"subscription {sub_id} not found")

    async def present(self, stored: StoredSubscription, context_value: Any, ctx: Context) -> dict[str, Any]:
        """The subscription as clause 5.2.12 shows it, in the reader's terms, with the read-only members."""
        doc = stored.doc
        if context_value != stored.context:
            doc = recontext(doc, await self.resolver.aresolve(stored.context), ctx)
        out = {"id": doc["id"], "type": "Subscription", **{k: v for k, v in doc.items() if k not in ("id", "type")}}
        # the default triggers are shown (they are what the subscription does); isActive only as written
        out.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
        out["status"] = status_of(stored.doc)
        note = dict(out["notification"])
        note.setdefault("format", "normalized")
        note["endpoint"] = {"accept": "application/json", **note["endpoint"]}
        for member in STAT_MEMBERS:
            if member in stored.stats:
                note[member] = stored.stats[member]
        out["notification"] = note
        return out
