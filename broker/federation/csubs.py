"""Context source registration subscriptions (clauses 5.11, 6.12, 6.13) and their notifications (5.11.7, 5.3.2).

The Subscription data type, its validation and PATCH merge are those of
entity subscriptions (broker.subscriptions.model); the documents live in
the store's registry (kind 'csub'). Notifications go out at once from a
task of their own, to the endpoint over HTTP: initially on subscription,
on every change of a matching registration (triggerReason newlyMatching,
updated, noLongerMatching), and every timeInterval seconds for periodic
ones. Unlike entity notifications they are not queued durably: a broker
that stops loses what it had not sent yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import orjson

from broker.federation import matching
from broker.federation.service import RegistrationService
from broker.store.base import RegistryDoc, Store
from broker.subscriptions.model import geo_query, merge, new_subscription, recontext, status_of
from models.context import CORE_CONTEXT_URL, Context, ContextResolver
from models.errors import AlreadyExists, BadRequestData, NonexistentTenant, ResourceNotFound
from models.times import now_utc, parse_utc, utc_iso
from models.validation import check_uri

log = logging.getLogger("broker.federation")
KIND = "csub"
STAT_MEMBERS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure", "status")


def _temporal_q(value: Any) -> tuple[str, str, Any, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("temporalQ must be an object")
    rel = value.get("timerel")
    if rel not in ("before", "after", "between") or "timeAt" not in value:
        raise BadRequestData("temporalQ needs timerel (before, after, between) and timeAt")
    at = parse_utc(value["timeAt"], "temporalQ.timeAt")
    end = parse_utc(value["endTimeAt"], "temporalQ.endTimeAt") if "endTimeAt" in value else None
    if rel == "between" and end is None:
        raise BadRequestData("temporalQ between needs endTimeAt")
    prop = value.get("timeproperty", "observedAt")
    if prop not in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
        raise BadRequestData(f"temporalQ.timeproperty {prop!r} is unknown")
    return prop, rel, at, end


def _check(doc: dict[str, Any]) -> None:
    if "temporalQ" in doc:
        _temporal_q(doc["temporalQ"])
    if doc.get("watchedAttributes") == []:
        raise BadRequestData("watchedAttributes must not be empty")


class CSourceSubscriptions:
    """CRUD of csource subscriptions and the notifier that follows registration writes."""

    def __init__(self, store: Store, resolver: ContextResolver, registrations: RegistrationService,
                 timeout: float = 5.0) -> None:
        self.store = store
        self.resolver = resolver
        self.registrations = registrations
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._periodic: asyncio.Task[None] | None = None
        self._next_run: dict[tuple[str, str], float] = {}
        registrations.listeners.append(self.registration_changed)

    async def start(self) -> None:
        """Open the HTTP client and the periodic loop."""
        self._http = httpx.AsyncClient(timeout=self.timeout)
        self._periodic = asyncio.create_task(self._periodic_loop(), name="csource-periodic")

    async def stop(self) -> None:
        """Stop the loop, wait a moment for notifications under way."""
        if self._periodic is not None:
            self._periodic.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._http is not None:
            await self._http.aclose()

    # ---------------------------------------------------------------- CRUD

    async def create(self, tenant: str, body: Any, context_value: Any, ctx: Context) -> str:
        """Create (5.11.2): the id; BadRequestData, AlreadyExists. Sends the initial notification."""
        if isinstance(body, dict) and "id" not in body:
            body = {**body, "id": f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"}
        doc = new_subscription(body)
        _check(doc)
        await self.store.ensure_tenant(tenant)
        item = RegistryDoc(KIND, tenant, doc["id"], doc, context_value, {})
        if not await self.store.registry_put(item, create=True):
            raise AlreadyExists(f"subscription {doc['id']} already exists")
        if doc.get("timeInterval"):
            self._next_run[(tenant, item.id)] = time.monotonic() + float(doc["timeInterval"])
        self._spawn(self._initial(item))
        return str(doc["id"])

    async def get(self, tenant: str, sub_id: str) -> RegistryDoc:
        """Retrieve (5.11.3): ResourceNotFound when absent."""
        check_uri(sub_id, "subscription id")
        item = await self.store.registry_get(KIND, tenant, sub_id)
        if item is None:
            if tenant and not await self.store.has_tenant(tenant):
                raise NonexistentTenant(f"tenant {tenant!r} does not exist")
            raise ResourceNotFound(f"subscription {sub_id} not found")
        return item

    async def query(self, tenant: str) -> list[RegistryDoc]:
        """Query (5.11.4): every csource subscription of the tenant, by id."""
        if tenant and not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")
        return await self.store.registry_list(KIND, tenant)

    async def update(self, tenant: str, sub_id: str, fragment: Any, context_value: Any, ctx: Context) -> None:
        """Update (5.11.5): members replaced whole (5.5.8)."""
        item = await self.get(tenant, sub_id)
        own = await self.resolver.aresolve(item.context)
        rename = None if context_value == item.context else (lambda frag: recontext(frag, ctx, own))
        doc = merge(item.doc, fragment, rename)
        _check(doc)
        updated = RegistryDoc(KIND, tenant, sub_id, doc, item.context, item.stats)
        if not await self.store.registry_put(updated, create=False):
            raise ResourceNotFound(f"subscription {sub_id} not found")

    async def delete(self, tenant: str, sub_id: str) -> None:
        """Delete (5.11.6)."""
        check_uri(sub_id, "subscription id")
        if not await self.store.registry_delete(KIND, tenant, sub_id):
            if tenant and not await self.store.has_tenant(tenant):
                raise NonexistentTenant(f"tenant {tenant!r} does not exist")
            raise ResourceNotFound(f"subscription {sub_id} not found")
        self._next_run.pop((tenant, sub_id), None)

    async def present(self, item: RegistryDoc, context_value: Any, ctx: Context) -> dict[str, Any]:
        """The subscription as clause 5.2.12 shows it, in the reader's terms, with the status members."""
        doc = item.doc
        if context_value != item.context:
            doc = recontext(doc, await self.resolver.aresolve(item.context), ctx)
        out = {"id": doc["id"], "type": "Subscription", **{k: v for k, v in doc.items() if k not in ("id", "type")}}
        out["status"] = status_of(item.doc)
        note = dict(out["notification"])
        note.setdefault("format", "normalized")
        note["endpoint"] = {"accept": "application/json", **note["endpoint"]}
        for member in STAT_MEMBERS:
            if member in item.stats:
                note[member] = item.stats[member]
        out["notification"] = note
        return out

    # ---------------------------------------------------------------- matching

    async def _wanted(self, item: RegistryDoc) -> tuple[Context, list[matching.Wanted]]:
        ctx = await self.resolver.aresolve(item.context)
        doc = item.doc
        attrs = list(doc.get("watchedAttributes") or []) + list(doc.get("notification", {}).get("attributes") or [])
        attr_iris = frozenset(ctx.expand_term(a) for a in attrs)
        geo = geo_query(doc["geoQ"]) if "geoQ" in doc else None
        temporal = _temporal_q(doc["temporalQ"]) if "temporalQ" in doc else None
        selectors = doc.get("entities") or [{}]
        wanted = []
        for sel in selectors:
            ids = sel.get("id")
            wanted.append(matching.Wanted(
                ids=frozenset(ids if isinstance(ids, list) else [ids]) if ids else frozenset(),
                id_pattern=sel.get("idPattern"),
                types=frozenset([ctx.expand_term(sel["type"])]) if isinstance(sel.get("type"), str) else frozenset(),
                attrs=attr_iris, geo=geo, temporal=temporal))
        return ctx, wanted

    async def _matches(self, item: RegistryDoc, reg: dict[str, Any] | None) -> bool:
        if reg is None:
            return False
        _, wanted = await self._wanted(item)
        now = now_utc()
        return any(matching.registration_matches(reg, w, now=now) for w in wanted)

    def _active(self, item: RegistryDoc) -> bool:
        return status_of(item.doc) == "active"

    # ---------------------------------------------------------------- notifications

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _all_matching(self, item: RegistryDoc) -> list[RegistryDoc]:
        out = []
        for reg, expanded in await self.registrations.active(item.tenant):
            if await self._matches(item, expanded):
                out.append(reg)
        return out

    async def _initial(self, item: RegistryDoc) -> None:
        if not self._active(item):
            return
        regs = await self._all_matching(item)
        if regs:
            await self._notify(item, regs, "newlyMatching")

    async def registration_changed(self, tenant: str, reg_id: str, before: dict[str, Any] | None,
                                   after: dict[str, Any] | None) -> None:
        """A registration was created, updated or deleted: notify the subscriptions it concerns."""
        subs = await self.store.registry_list(KIND, tenant)
        for item in subs:
            if not self._active(item) or item.doc.get("timeInterval"):
                continue
            was, now = await self._matches(item, before), await self._matches(item, after)
            if not was and not now:
                continue
            reason = "updated" if was and now else "newlyMatching" if now else "noLongerMatching"
            reg = await self.store.registry_get("csr", tenant, reg_id)
            if reg is None:  # deleted: what it was, in IRIs, compacted with the subscriber's context below
                reg = RegistryDoc("csr", tenant, reg_id, before or {"id": reg_id}, None, {})
            self._spawn(self._notify(item, [reg], reason))

    async def _periodic_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                due = [k for k, at in self._next_run.items() if at <= time.monotonic()]
                for tenant, sub_id in due:
                    item = await self.store.registry_get(KIND, tenant, sub_id)
                    if item is None or not item.doc.get("timeInterval"):
                        self._next_run.pop((tenant, sub_id), None)
                        continue
                    self._next_run[(tenant, sub_id)] = time.monotonic() + float(item.doc["timeInterval"])
                    if self._active(item):
                        self._spawn(self._notify(item, await self._all_matching(item), None))
            except Exception:  # the loop must outlive one bad subscription
                log.exception("periodic csource notification failed")

    async def _notify(self, item: RegistryDoc, regs: list[RegistryDoc], reason: str | None) -> None:
        ctx, wanted = await self._wanted(item)
        data = []
        for reg in regs:
            if reg.context is None and reg.doc.get("type") is None:
                data.append({"id": reg.id, "type": "ContextSourceRegistration"})
                continue
            if reg.context is None:
                shown = recontext_registration(reg.doc, ctx)
            else:
                shown = await self.registrations.present(reg, item.context, ctx)
            data.append(_relevant(shown, ctx, wanted))
        endpoint = item.doc["notification"]["endpoint"]
        accept = endpoint.get("accept", "application/json")
        body: dict[str, Any] = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "ContextSourceNotification",
                                "subscriptionId": item.id, "notifiedAt": utc_iso(now_utc()), "data": data}
        if reason is not None:
            body["triggerReason"] = reason
        context = item.doc.get("jsonldContext") or (item.context if isinstance(item.context, str) else CORE_CONTEXT_URL)
        headers = {"Content-Type": accept if accept in ("application/json", "application/ld+json") else "application/json"}
        if headers["Content-Type"] == "application/ld+json":
            body["@context"] = item.context if item.context is not None else CORE_CONTEXT_URL
        else:
            headers["Link"] = f'<{context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        if item.tenant:
            headers["NGSILD-Tenant"] = item.tenant
        for kv in endpoint.get("receiverInfo") or []:
            headers[kv["key"]] = kv["value"]
        ok = False
        try:
            assert self._http is not None
            response = await self._http.post(endpoint["uri"], content=orjson.dumps(body), headers=headers)
            ok = 200 <= response.status_code < 300
        except (httpx.HTTPError, OSError) as exc:
            log.info("csource notification to %s failed: %s", endpoint["uri"], exc)
        current = await self.store.registry_get(KIND, item.tenant, item.id)
        if current is None:
            return
        stats = dict(current.stats)
        at = utc_iso(now_utc())
        stats["timesSent"] = int(stats.get("timesSent", 0)) + 1
        stats["lastNotification"] = at
        if ok:
            stats["lastSuccess"], stats["status"] = at, "ok"
        else:
            stats["timesFailed"] = int(stats.get("timesFailed", 0)) + 1
            stats["lastFailure"], stats["status"] = at, "failed"
        await self.store.registry_stats(KIND, item.tenant, item.id, stats)


def recontext_registration(doc: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """An expanded registration (a deleted one) compacted with a subscriber's context."""
    from broker.federation.registration import map_terms

    return map_terms(doc, ctx.compact_iri)


def _relevant(shown: dict[str, Any], ctx: Context, wanted: list[matching.Wanted]) -> dict[str, Any]:
    """5.11.7: the registration with only the RegistrationInfo elements matching the subscription.

    `shown` is the registration in the subscriber's terms (`ctx`); each element is matched in IRIs.
    When no element matches on its own (the registration matched as a whole), all are kept.
    """
    infos = shown.get("information")
    if not isinstance(infos, list):
        return shown
    keep = [info for info in infos if isinstance(info, dict) and any(matching.info_matches(_iris(info, ctx), w)
                                                                     for w in wanted)]
    if not keep or len(keep) == len(infos):
        return shown
    return {**shown, "information": keep}


def _iris(info: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A RegistrationInfo in the subscriber's terms with its types and attribute names as IRIs."""
    def iri(t: Any) -> Any:
        return [ctx.expand_term(x) for x in t] if isinstance(t, list) else ctx.expand_term(t) if isinstance(t, str) else t
    out = dict(info)
    out["entities"] = [{**e, "type": iri(e.get("type"))} if isinstance(e, dict) else e
                       for e in info.get("entities") or []]
    for key in ("propertyNames", "relationshipNames"):
        if isinstance(info.get(key), list):
            out[key] = [ctx.expand_term(n) for n in info[key] if isinstance(n, str)]
    if not info.get("entities"):
        out.pop("entities")
    return out
