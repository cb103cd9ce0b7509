"""Distributed subscriptions (clauses 5.8.1.4, 5.8.2.4, 5.8.5.4, localOnly=false; operations of Table 4.20-2).

A subscription here is also made at every registered source whose registration matches its
entities and offers createSubscription (federationOps does): a copy of the subscription, with an
id of its own and this broker's relay endpoint as notification endpoint (on the public URL,
METROPOLE_BROKER_PUBLIC_URL, when set; else http://HOST:PORT). Notifications arriving at the relay
endpoint are sent on to the original subscriber with the original subscription id.

The copies follow both sides (`reconcile`), as 5.8.1.4 has them follow the internal context source
registration subscription:

    subscription created            copies at the matching sources
    subscription updated (PATCH)    the fragment forwarded to each copy (updateSubscription); copies
                                    made or deleted where the update changes what matches
    subscription deleted            the copies deleted (deleteSubscription)
    registration created/updated    newlyMatching: a copy made; updated: its entities follow the
                                    registration's types; an endpoint moved: the copy moved
    registration deleted, or no     noLongerMatching: its copy deleted
    longer matching

The map (subscription -> token, copies) is kept in the store (broker.federation.relays), so relaying
goes on after a restart. A source that cannot be reached (or answers 5xx) when its copy is made,
updated or deleted is tried again on a capped backoff (RETRY_FIRST doubling up to RETRY_CAP seconds,
resumed from the store at start): a copy an update did not reach is deleted and made anew from the
subscription as it is then; a 4xx answer is logged and not retried. A copy holds the subscription's entity selectors of the types its registration
offers (kept in the record: a changed registration PATCHes them); splitEntities=true drops q, geoQ,
scopeQ and the notification's attributes, pick, omit (not splitting is this deployment's default).
Simplifications (see the README "Federation" section): watchedAttributes are not reduced to the
registration's names, and two broker processes on one store each retry what they know of.

A relayed notification goes the way of the broker's own (broker.subscriptions.delivery): rewritten
(subscriptionId the original one) and queued durably for the original subscription, then delivered at
least once, in order with its other notifications, retried on a capped backoff, over HTTP(S) or MQTT
with the endpoint's receiverInfo, and counted in its notification status members. The relay endpoint
answers 204 only once the notification is queued, 503 when it could not be (the source retries).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.federation import matching
from broker.federation.forward import Forwarder, Target
from broker.federation.registration import operations_of
from broker.federation.relays import Copy, RelayRecord, RelayStore, source_of
from broker.federation.service import RegistrationService
from broker.store.base import RegistryDoc, Store
from broker.subscriptions.model import status_of
from broker.subscriptions.storage import StoredSubscription, SubscriptionStorage
from models.context import Context, ContextResolver
from models.media import API

if TYPE_CHECKING:  # broker.state imports this module: a run-time import back would be a cycle
    from broker.state import BrokerState

log = logging.getLogger(__name__)

RELAY_PATH = "/federation/notify"
RETRY_FIRST = 1.0
RETRY_CAP = 60.0
_MODES = ("inclusive", "exclusive", "redirect")
_NOT_COPIED = ("id", "localOnly", "status")
_SPLIT_MEMBERS = ("q", "geoQ", "scopeQ")
_SPLIT_NOTIFICATION = ("attributes", "pick", "omit")


Enqueue = Callable[[str, str, bytes], Awaitable[None]]
"""Queue one notification (render.envelope's form) of (tenant, subscription) durably (Subscriptions.enqueue)."""


def relayed(doc: dict[str, Any]) -> bool:
    """Whether a subscription is copied to sources: not localOnly, notified over HTTP(S) or MQTT."""
    endpoint = (doc.get("notification") or {}).get("endpoint") or {}
    return doc.get("localOnly") is not True and str(endpoint.get("uri", "")).lower().startswith(("http", "mqtt"))


class SubscriptionRelay:
    """The copies of this broker's subscriptions at registered sources, and the relay of their notifications."""

    def __init__(self, store: Store, storage: SubscriptionStorage, registrations: RegistrationService,
                 forwarder: Forwarder, resolver: ContextResolver, enqueue: Enqueue) -> None:
        self.relays = RelayStore(store)
        self.enqueue = enqueue
        self.store = store
        self.storage = storage
        self.registrations = registrations
        self.forwarder = forwarder
        self.resolver = resolver
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._retry: dict[tuple[str, str], tuple[float, int]] = {}
        """(tenant, subscription) -> (time.monotonic() it is due, attempts so far)"""
        self._loop: asyncio.Task[None] | None = None
        registrations.listeners.append(self.registration_changed)

    async def start(self) -> None:
        """Resume the copies still to be made (kept in the store), then follow the retry schedule."""
        for record in await self.relays.all():
            if record.pending or record.orphans:
                self._retry[(record.tenant, record.sub_id)] = (time.monotonic(), 0)
        self._loop = asyncio.create_task(self._retry_loop(), name="subscription-relay-retry")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            try:
                await self._loop
            except asyncio.CancelledError:
                pass

    # ---------------------------------------------------------------- what the API and registrations call

    async def created(self, request: Request, tenant: str, sub_id: str, body: dict[str, Any], context_value: Any,
                      ctx: Any) -> None:
        """Copy a new subscription to the matching sources offering createSubscription (5.8.1.4)."""
        if relayed(body):
            await self.reconcile(tenant, sub_id, request.headers)

    async def updated(self, request: Request, tenant: str, sub_id: str, fragment: Any, context_value: Any) -> None:
        """Forward an update to the copies (5.8.2.4); make or delete copies where what matches changed."""
        await self.reconcile(tenant, sub_id, request.headers,
                             fragment=fragment if isinstance(fragment, dict) else None, context_value=context_value)

    async def deleted(self, request: Request, tenant: str, sub_id: str) -> None:
        """Delete the copies of a deleted subscription at their sources (5.8.5.4)."""
        await self.reconcile(tenant, sub_id, request.headers)
        self._locks.pop((tenant, sub_id), None)

    async def registration_changed(self, tenant: str, reg_id: str, before: dict[str, Any] | None,
                                   after: dict[str, Any] | None) -> None:
        """A registration was created, updated or deleted: copies made, moved or deleted for every subscription
        of the tenant it concerns (the newlyMatching / updated / noLongerMatching of 5.8.1.4)."""
        # one read of the tenant's records, then a check in memory: a store round trip per subscription
        # made a registration write take 0.7 s at 1,000 subscriptions matching none
        recorded = {r.sub_id for r in await self.relays.of_tenant(tenant)}
        offers = (after is not None and after.get("mode", "inclusive") in _MODES
                  and "createSubscription" in operations_of(after))
        offset, page = 0, 500
        while True:
            subs, total = await self.storage.page(tenant, page, offset)
            for sub in subs:
                if sub.id in recorded or (offers and after is not None and relayed(sub.doc) and matching.registration_matches(
                        after, _wanted(sub, await self.resolver.aresolve(sub.context)))):
                    await self.reconcile(tenant, sub.id, {})
            offset += page
            if offset >= total or not subs:
                return

    # ---------------------------------------------------------------- reconciliation

    async def reconcile(self, tenant: str, sub_id: str, request_headers: Any, *, fragment: dict[str, Any] | None = None,
                        context_value: Any = None) -> bool:
        """Bring the copies of one subscription in line with it and with the registrations; whether copies
        remain to be made (a source unreachable)."""
        async with self._locks.setdefault((tenant, sub_id), asyncio.Lock()):
            return await self._reconcile(tenant, sub_id, request_headers, fragment, context_value)

    async def _reconcile(self, tenant: str, sub_id: str, request_headers: Any, fragment: dict[str, Any] | None,
                         context_value: Any) -> bool:
        stored = await self.storage.get(tenant, sub_id)
        record = await self.relays.load(tenant, sub_id)
        loaded = record.to_doc() if record is not None else None
        if record is not None and record.orphans:  # copies whose delete failed: tried again first
            record.orphans = [o for o in record.orphans if not await self._delete_copy(tenant, o, request_headers)]
        if stored is None or not relayed(stored.doc):
            if record is not None:
                gone = list(record.copies.values())
                record.copies, record.pending = {}, {}
                done = await asyncio.gather(*(self._delete_copy(tenant, c, request_headers) for c in gone))
                record.orphans += [c for c, ok in zip(gone, done, strict=True) if not ok]
                await self._settle(record, loaded)
            return bool(record and record.orphans)
        ctx = await self.resolver.aresolve(stored.context)
        plan = await self.forwarder.plan(tenant, "createSubscription", _wanted(stored, ctx),
                                         request_headers.get("via"), modes=_MODES)
        matched = {t.item.id: t for t in plan.targets + plan.skipped}
        if record is None:
            if not plan.targets:
                return False
            record = RelayRecord(tenant, sub_id, secrets.token_urlsafe(16))
        # noLongerMatching (or the registration gone), or the source moved: the copy goes
        for reg_id, copy in list(record.copies.items()):
            target = matched.get(reg_id)
            if target is None or _where(source_of(target.reg)) != _where(copy.source):
                del record.copies[reg_id]
                if not await self._delete_copy(tenant, copy, request_headers):
                    record.orphans.append(copy)
            elif source_of(target.reg) != copy.source:  # same source, other operations or mode
                copy.source = source_of(target.reg)
        record.pending = {k: v for k, v in record.pending.items() if k in matched}
        # updated: the fragment to each copy kept; its entities follow the subscription's and the registration's
        if fragment is not None and record.copies:
            kept = list(record.copies.items())
            done = await asyncio.gather(*(self._update_copy(matched[reg_id], copy, record, stored, fragment,
                                                            request_headers, context_value) for reg_id, copy in kept))
            for (reg_id, copy), ok in zip(kept, done, strict=True):
                if not ok:
                    self._redo(record, reg_id, copy)
        for reg_id, copy in list(record.copies.items()):
            entities = _reduced_entities(stored.doc, matched[reg_id], ctx)
            if entities is not None and entities != copy.entities:
                if await self._update_copy(matched[reg_id], copy, record, stored, {"entities": entities},
                                           request_headers, _terms_context(stored), own=True):
                    copy.entities = entities
                else:
                    self._redo(record, reg_id, copy)
        # newlyMatching (or still to be made): a copy made
        missing = [t for t in plan.targets if t.item.id not in record.copies]
        if missing:
            await self.relays.save(record)  # the token is known before a source can notify it
            await asyncio.gather(*(self._create_copy(t, record, stored, ctx, request_headers) for t in missing))
        await self._settle(record, loaded)
        return bool(record.pending or record.orphans)

    def _redo(self, record: RelayRecord, reg_id: str, copy: Copy) -> None:
        """A copy that could not be updated (its source unreachable): deleted and made anew once it answers."""
        del record.copies[reg_id]
        record.orphans.append(copy)
        record.pending[reg_id] = record.pending.get(reg_id, 0)

    async def _settle(self, record: RelayRecord, loaded: dict[str, Any] | None) -> None:
        """Keep the record if it changed since `loaded` (or drop it when it holds nothing); (un)schedule its retry."""
        key = (record.tenant, record.sub_id)
        if not record.copies and not record.pending and not record.orphans:
            await self.relays.drop(record)
        elif record.to_doc() != loaded:
            await self.relays.save(record)
        if record.pending or record.orphans:
            self._retry.setdefault(key, (time.monotonic() + RETRY_FIRST, 0))
        else:
            self._retry.pop(key, None)

    def _relay_endpoint(self, record: RelayRecord, stored: StoredSubscription) -> dict[str, Any]:
        endpoint = (stored.doc.get("notification") or {}).get("endpoint") or {}
        return {"uri": f"{self.forwarder.public_url}{API}{RELAY_PATH}/{record.token}",
                "accept": endpoint.get("accept", "application/json")}

    async def _create_copy(self, t: Target, record: RelayRecord, stored: StoredSubscription, ctx: Context,
                           headers: Any) -> None:
        """POST the copy (5.8.1.4 newlyMatching): the subscription reduced to the types the registration offers,
        without q, geoQ, scopeQ and the notification's attributes, pick, omit when it allows split entities."""
        copy_id = f"urn:ngsi-ld:Subscription:relay-{uuid.uuid4()}"
        doc = stored.doc
        body = {k: v for k, v in doc.items() if k not in _NOT_COPIED and not (_split(doc) and k in _SPLIT_MEMBERS)}
        entities = _reduced_entities(doc, t, ctx)
        if entities is not None:
            body["entities"] = entities
        note = {k: v for k, v in (doc.get("notification") or {}).items()
                if not (_split(doc) and k in _SPLIT_NOTIFICATION)}
        body["notification"] = {**note, "endpoint": self._relay_endpoint(record, stored)}
        reply = await self.forwarder.send(t, "POST", "/subscriptions", body={"id": copy_id, **body},
                                          request_headers=headers, context_value=_terms_context(stored))
        if reply.status == 201:
            record.copies[t.item.id] = Copy(t.item.id, copy_id, source_of(t.reg), entities)
            record.pending.pop(t.item.id, None)
            return
        log.warning("subscription %s not created at %s (registration %s): %s", record.sub_id, t.endpoint,
                    t.item.id, reply.error or reply.status)
        if _transient(reply.status):  # unreachable, timed out, failing: tried again later
            record.pending[t.item.id] = record.pending.get(t.item.id, 0) + 1
        else:
            record.pending.pop(t.item.id, None)

    async def _update_copy(self, t: Target, copy: Copy, record: RelayRecord, stored: StoredSubscription,
                           fragment: dict[str, Any], headers: Any, context_value: Any, *, own: bool = False) -> bool:
        """PATCH a copy (5.8.1.4 updated, 5.8.2.4) with a client's fragment (its entities are sent reduced,
        separately: `own`), or with this broker's own fragment; False when the source could not be reached
        (or failed, 5xx): the copy is then made anew."""
        if "updateSubscription" not in operations_of(t.reg):
            log.info("registration %s does not offer updateSubscription: copy %s of %s left as it is", t.item.id,
                     copy.copy_id, record.sub_id)
            return True
        split = _split(stored.doc)
        frag = fragment if own else {k: v for k, v in fragment.items() if k not in (*_NOT_COPIED, "entities")
                                     and not (split and k in _SPLIT_MEMBERS)}
        if isinstance(frag.get("notification"), dict):  # the copy keeps notifying the relay endpoint
            note = {k: v for k, v in frag["notification"].items() if not (split and k in _SPLIT_NOTIFICATION)}
            frag["notification"] = {**note, "endpoint": self._relay_endpoint(record, stored)}
        if not set(frag) - {"type", "@context"}:
            return True
        reply = await self.forwarder.send(t, "PATCH", f"/subscriptions/{copy.copy_id}", body=frag,
                                          request_headers=headers, context_value=context_value)
        if not reply.ok:
            log.warning("update of subscription %s not forwarded to copy %s at %s: %s", record.sub_id, copy.copy_id,
                        t.endpoint, reply.error or reply.status)
        return not _transient(reply.status)

    async def _delete_copy(self, tenant: str, copy: Copy, headers: Any) -> bool:
        """DELETE the copy at the source it was made at; False when the source could not be reached (or failed,
        5xx): the delete is tried again. Another failure is logged."""
        if "deleteSubscription" not in operations_of(copy.source):
            return True
        item = await self.store.registry_get("csr", tenant, copy.registration)
        target = Target(item or RegistryDoc("csr", tenant, copy.registration, {}, None, {}), copy.source,
                        str(copy.source.get("mode", "inclusive")), [], [])
        reply = await self.forwarder.send(target, "DELETE", f"/subscriptions/{copy.copy_id}",
                                          request_headers=headers, context_value=None)
        if not reply.ok and reply.status != 404:
            log.warning("copy %s at %s (registration %s) not deleted: %s", copy.copy_id, copy.endpoint,
                        copy.registration, reply.error or reply.status)
        return not _transient(reply.status)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for key, (due, attempts) in list(self._retry.items()):
                if due > now:
                    continue
                self._retry.pop(key, None)
                try:
                    still = await self.reconcile(*key, {})
                except Exception:  # the loop must outlive one bad subscription
                    log.exception("retry of the copies of subscription %s failed", key[1])
                    still = True
                if still:
                    self._retry[key] = (time.monotonic() + min(RETRY_FIRST * 2 ** (attempts + 1), RETRY_CAP),
                                        attempts + 1)

    # ---------------------------------------------------------------- relaying

    async def relay(self, token: str, body: bytes, content_type: str, link: str | None = None) -> bool:
        """Queue a source's notification for the original subscriber (its delivery is the subscription's own);
        False for an unknown token. Raises when the queue could not be written (the source is to retry)."""
        found = await self.relays.by_token(token)
        stored = await self.storage.get(*found) if found is not None else None
        if stored is None:
            return False
        if status_of(stored.doc) != "active":
            return True  # paused or expired here: nothing is sent on
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True  # nothing to relay; the source is not asked to retry garbage
        if not isinstance(doc, dict):
            return True
        doc["subscriptionId"] = stored.id
        media = (content_type or "application/json").split(";")[0].strip() or "application/json"
        message = {"contentType": media, "link": link if media != "application/ld+json" else None,
                   "notification": doc}
        await self.enqueue(stored.tenant, stored.id, orjson.dumps(message))
        return True


def _transient(status: int) -> bool:
    """A reply worth trying again: no answer (0) or a failing source (5xx)."""
    return status == 0 or status >= 500


def _wanted(stored: StoredSubscription, ctx: Context) -> matching.Wanted:
    """The entities of a subscription as a request for matching registrations."""
    ents = [e for e in stored.doc.get("entities") or [] if isinstance(e, dict)]
    types = {ctx.expand_term(t) for e in ents for t in _types(e.get("type"))}
    ids = {e["id"] for e in ents if isinstance(e.get("id"), str)}
    patterns = [e["idPattern"] for e in ents if isinstance(e.get("idPattern"), str)]
    return matching.Wanted(ids=frozenset(ids), types=frozenset(types),
                           id_pattern=patterns[0] if len(patterns) == 1 and len(ents) == 1 else None)


def _split(doc: dict[str, Any]) -> bool:
    """Whether the subscription allows split entities (5.8.1.4): only when it says so (this deployment's
    default is no: a source is asked with the whole q, as distributed queries are)."""
    return doc.get("splitEntities") is True


def _reduced_entities(doc: dict[str, Any], t: Target, ctx: Context) -> list[Any] | None:
    """The subscription's entity selectors the registration offers a type of (all when it offers any type)."""
    entities = doc.get("entities")
    if not isinstance(entities, list) or not t.types:
        return entities if isinstance(entities, list) else None
    offered = set(t.types)
    kept = [e for e in entities
            if not isinstance(e, dict) or {ctx.expand_term(x) for x in _types(e.get("type"))} & offered]
    return kept or entities


def _where(source: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two registrations the same source for a copy: endpoint, tenant, headers."""
    return (str(source.get("endpoint", "")).rstrip("/"), source.get("tenant"), source.get("contextSourceInfo"))


def _terms_context(stored: StoredSubscription) -> Any:
    """The @context the stored subscription's terms are in, as a URL where there is one (a copy's Link):
    an inline or several-item @context is hosted here under the subscription's jsonldContext (5.8.1.4)."""
    value = stored.context
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or isinstance(value, str):
        return value
    return stored.doc.get("jsonldContext")


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t for t in value.replace("|", ",").replace(";", ",").replace("(", "").replace(")", "").split(",")
                if t]
    return []


def relay_of(request: Request) -> SubscriptionRelay:
    """`BrokerState.subscription_relay` of the app serving the request (as broker.state.broker_state reads it)."""
    state: BrokerState = request.app.state.broker
    return state.subscription_relay


router = APIRouter(prefix=API)


@router.post(RELAY_PATH + "/{token}", include_in_schema=False)
async def relay_notification(token: str, request: Request) -> Response:
    """A source's notification for a copied subscription: queued for the subscriber (204), 404 if unknown,
    503 when it could not be queued (the source is to send it again)."""
    try:
        known = await relay_of(request).relay(token, await request.body(), request.headers.get("content-type", ""),
                                              request.headers.get("link"))
    except Exception:  # whatever kept it from the queue, the source must not take it as delivered
        log.exception("relayed notification for token %s not queued", token[:6])
        return Response(status_code=503)
    return Response(status_code=204 if known else 404)
