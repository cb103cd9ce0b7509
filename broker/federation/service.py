"""Context source registration operations (clauses 5.9, 5.10) over the store's registry (migration 6).

Registrations are few (one per town, per vendor broker): every query reads
a tenant's registrations and filters them in Python. The expanded form of
each one is memoised by (tenant, id, document) for the forwarding path,
which asks for the matching registrations of every distributed request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from broker.federation import matching
from broker.federation.registration import (
    CORE_MEMBERS,
    STAT_MEMBERS,
    expand,
    merge,
    new_registration,
    recontext,
)
from broker.store.base import EntityFilter, RegistryDoc, Store
from models.context import Context, ContextResolver
from models.errors import AlreadyExists, BadRequestData, Conflict, NonexistentTenant, ResourceNotFound
from models.times import now_utc, parse_utc, utc_iso
from models.validation import check_uri
from models.vocabulary import PROPERTY

KIND = "csr"
CACHE_SECONDS = 1.0
Listener = Callable[[str, str, dict[str, Any] | None, dict[str, Any] | None], Any]
"""(tenant, id, expanded doc before, expanded doc after): told of every registration write"""


class RegistrationService:
    """Create, retrieve, query, update and delete context source registrations."""

    def __init__(self, store: Store, resolver: ContextResolver) -> None:
        self.store = store
        self.resolver = resolver
        self.listeners: list[Listener] = []
        self._expanded: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        self._active: dict[str, tuple[float, list[RegistryDoc]]] = {}

    async def expanded(self, item: RegistryDoc) -> dict[str, Any]:
        """The registration in IRIs (memoised per stored document)."""
        key = (item.tenant, item.id)
        held = self._expanded.get(key)
        if held is not None and held[0] == item.doc:
            return held[1]
        doc = expand(item.doc, await self.resolver.aresolve(item.context))
        self._expanded[key] = (item.doc, doc)
        return doc

    async def _tell(self, tenant: str, reg_id: str, before: RegistryDoc | None, after: RegistryDoc | None) -> None:
        self._active.pop(tenant, None)
        old = await self.expanded(before) if before else None
        new = await self.expanded(after) if after else None
        for listener in self.listeners:
            await listener(tenant, reg_id, old, new)

    async def _check_conflicts(self, tenant: str, doc: dict[str, Any], ctx: Context) -> None:
        """Clause 5.9.2.4: an exclusive registration may not overlap an exclusive or redirect one, nor name
        an attribute that an entity held here with the registered entity id already has (Conflict).

        Checked: the same entity id with a shared attribute, against registrations and against local entities.
        A redirect registration that an entity held here matches is a Conflict too (`_check_redirect`).
        """
        if doc.get("mode") == "redirect":
            await self._check_redirect(tenant, expand(doc, ctx))
        if doc.get("mode") != "exclusive":
            return
        mine = expand(doc, ctx)
        for info in mine["information"]:
            names = set(info.get("propertyNames", ())) | set(info.get("relationshipNames", ()))
            for entity_id in {e["id"] for e in info.get("entities", ()) if e.get("id")} if names else ():
                held = await self.store.get(tenant, entity_id)
                if held is not None and names & set(held.doc):
                    raise Conflict(f"entity {entity_id} is held here with {sorted(names & set(held.doc))}: "
                                   f"an exclusive registration may not take them (clause 5.9.2.4)")
        for other in await self.store.registry_list(KIND, tenant):
            if other.id == doc["id"] or other.doc.get("mode") not in ("exclusive", "redirect"):
                continue
            theirs = await self.expanded(other)
            for a in mine["information"]:
                for b in theirs["information"]:
                    ids_a = {e.get("id") for e in a.get("entities", ()) if e.get("id")}
                    ids_b = {e.get("id") for e in b.get("entities", ()) if e.get("id")}
                    names_a = set(a.get("propertyNames", ())) | set(a.get("relationshipNames", ()))
                    names_b = set(b.get("propertyNames", ())) | set(b.get("relationshipNames", ()))
                    if ids_a & ids_b and names_a & names_b:
                        raise Conflict(f"registration {other.id} already holds {sorted(names_a & names_b)} "
                                       f"of {sorted(ids_a & ids_b)} exclusively")

    async def _check_redirect(self, tenant: str, mine: dict[str, Any]) -> None:
        """Clause 5.9.2.4: a redirect registration that an existing entity already matches is a Conflict.

        An entity matches a RegistrationInfo as in 5.12: one of its EntityInfo (id, idPattern, type), or any
        entity when it has none, and one of its propertyNames/relationshipNames, or any when it names none.
        """
        for info in mine["information"]:
            names = frozenset(info.get("propertyNames", ())) | frozenset(info.get("relationshipNames", ()))
            for selector in info.get("entities") or [{}]:
                types = selector.get("type")
                types = types if isinstance(types, list) else [types] if types else []
                flt = EntityFilter(ids=[selector["id"]] if selector.get("id") else None,
                                   id_pattern=selector.get("idPattern") or None,
                                   type_dnf=[frozenset([t]) for t in types] or None,
                                   attrs_any=names or None)
                found = await self.store.query(tenant, flt, limit=1, offset=0, count=False)
                if found.entities:
                    raise Conflict(f"entity {found.entities[0].doc['id']} is held here and matches the registration: "
                                   f"a redirect registration may not take it (clause 5.9.2.4)")

    async def create(self, tenant: str, body: Any, context_value: Any, ctx: Context) -> str:
        """Create (5.9.2): the new id; BadRequestData, AlreadyExists, Conflict."""
        doc = new_registration(body)
        await self._check_conflicts(tenant, doc, ctx)
        await self.store.ensure_tenant(tenant)
        item = RegistryDoc(KIND, tenant, doc["id"], doc, context_value, {})
        if not await self.store.registry_put(item, create=True):
            raise AlreadyExists(f"registration {doc['id']} already exists")
        await self._tell(tenant, item.id, None, item)
        return str(doc["id"])

    async def get(self, tenant: str, reg_id: str) -> RegistryDoc:
        """Retrieve (5.10.1): ResourceNotFound when absent or expired."""
        check_uri(reg_id, "registration id")
        item = await self.store.registry_get(KIND, tenant, reg_id)
        if item is None or _expired(item.doc):
            if tenant and not await self.store.has_tenant(tenant):
                raise NonexistentTenant(f"tenant {tenant!r} does not exist")
            raise ResourceNotFound(f"registration {reg_id} not found")
        return item

    async def update(self, tenant: str, reg_id: str, fragment: Any, context_value: Any, ctx: Context) -> None:
        """Update (5.9.3): members replaced whole (5.5.8)."""
        item = await self.get(tenant, reg_id)
        own = await self.resolver.aresolve(item.context)
        rename = None if context_value == item.context else (lambda frag: recontext(frag, ctx, own))
        doc = merge(item.doc, fragment, rename)
        await self._check_conflicts(tenant, doc, own)
        updated = RegistryDoc(KIND, tenant, reg_id, doc, item.context, item.stats)
        if not await self.store.registry_put(updated, create=False):
            raise ResourceNotFound(f"registration {reg_id} not found")
        await self._tell(tenant, reg_id, item, updated)

    async def delete(self, tenant: str, reg_id: str) -> None:
        """Delete (5.9.4)."""
        item = await self.get(tenant, reg_id)
        if not await self.store.registry_delete(KIND, tenant, reg_id):
            raise ResourceNotFound(f"registration {reg_id} not found")
        self._expanded.pop((tenant, reg_id), None)
        await self._tell(tenant, reg_id, item, None)

    async def active(self, tenant: str) -> list[tuple[RegistryDoc, dict[str, Any]]]:
        """Every unexpired registration of a tenant with its expanded form (the forwarding path).

        Every entity read asks this, so the list is held for CACHE_SECONDS: this process's own writes
        drop it at once, another broker process's writes on the same store are seen within that time.
        """
        held = self._active.get(tenant)
        now = time.monotonic()
        if held is not None and now - held[0] < CACHE_SECONDS:
            items = held[1]
        else:
            items = await self.store.registry_list(KIND, tenant)
            self._active[tenant] = (now, items)
        out = []
        for item in items:
            if not _expired(item.doc):
                out.append((item, await self.expanded(item)))
        return out

    async def query(self, tenant: str, params: Mapping[str, str], ctx: Context) -> list[RegistryDoc]:
        """Query (5.10.2): the matching registrations of a tenant, by id (pagination is the caller's)."""
        wanted, q, csf, scope = parse_query(params, ctx)
        if tenant and not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")
        now = now_utc()
        # registration members (registrationName, ...) are not expanded; csource properties are
        names = (lambda t: t if t in CORE_MEMBERS else ctx.expand_term(t))
        out = []
        for item, doc in await self.active(tenant):
            if not matching.registration_matches(doc, wanted, now=now):
                continue
            if q is not None and not q.matches(_as_entity(doc), names):
                continue
            if csf is not None and not csf.matches(_as_entity(doc), names):
                continue
            if scope is not None and not scope.matches(doc.get("scope")):
                continue
            out.append(item)
        return out

    async def record(self, item: RegistryDoc, ok: bool) -> None:
        """The status members after one distributed operation (Table 5.2.9-2)."""
        stats = dict(item.stats)
        at = utc_iso(now_utc())
        stats["timesSent"] = int(stats.get("timesSent", 0)) + 1
        if ok:
            stats["lastSuccess"] = at
            stats["status"] = "ok"
        else:
            stats["timesFailed"] = int(stats.get("timesFailed", 0)) + 1
            stats["lastFailure"] = at
            stats["status"] = "failed"
        item.stats = stats
        await self.store.registry_stats(KIND, item.tenant, item.id, stats)

    async def present(self, item: RegistryDoc, context_value: Any, ctx: Context, *, sys_attrs: bool = False) -> dict[str, Any]:
        """The registration as clause 5.2.9 shows it, in the reader's terms, with the read-only members."""
        doc = item.doc
        if context_value != item.context:
            doc = recontext(doc, await self.resolver.aresolve(item.context), ctx)
        out = {"id": doc["id"], "type": "ContextSourceRegistration",
               **{k: v for k, v in doc.items() if k not in ("id", "type")}}
        out.setdefault("mode", "inclusive")
        out.setdefault("operations", ["retrieveOps"] if out["mode"] == "auxiliary" else ["federationOps"])
        if "status" in item.stats:  # Table 5.2.9-2: present once a distributed operation was made
            out["status"] = item.stats["status"]
        for member in STAT_MEMBERS:
            if member in item.stats:
                out[member] = item.stats[member]
        return out


def _expired(doc: dict[str, Any]) -> bool:
    return "expiresAt" in doc and parse_utc(doc["expiresAt"], "expiresAt") <= now_utc()


def _as_entity(doc: dict[str, Any]) -> dict[str, Any]:
    """A registration seen as an entity whose members are Properties (q and csf evaluate on it)."""
    return {k: {"type": PROPERTY, "value": v} for k, v in doc.items() if k not in ("id", "type")} | {
        "id": doc["id"], "type": ["ContextSourceRegistration"]}


def parse_query(params: Mapping[str, str], ctx: Context) -> tuple[matching.Wanted, Any, Any, Any]:
    """The selection of a registration query (clause 5.10.2.4); BadRequestData on bad syntax or too wide."""
    from broker.query.geo import parse_geoquery
    from broker.query.q import compile_q
    from broker.query.scope import compile_scope_query

    ids = [i for i in params.get("id", "").split(",") if i]
    for i in ids:
        check_uri(i, "id")
    types = [t for t in params.get("type", "").replace("|", ",").replace(";", ",").split(",") if t]
    attrs = [a for a in params.get("attrs", "").split(",") if a]
    # syntax errors are InvalidQuery (BadRequestData)
    q = compile_q(params["q"]) if params.get("q") else None
    csf = compile_q(params["csf"]) if params.get("csf") else None
    scope = compile_scope_query(params["scopeQ"]) if params.get("scopeQ") else None
    geo = None
    if any(k in params for k in ("georel", "geometry", "coordinates")):
        geo = parse_geoquery(params.get("georel"), params.get("geometry"), params.get("coordinates"),
                             params.get("geoproperty"))
    temporal = None
    if "timerel" in params or "timeAt" in params:
        rel = params.get("timerel")
        if rel not in ("before", "after", "between") or "timeAt" not in params:
            raise BadRequestData("a temporal query needs timerel (before, after, between) and timeAt")
        at = parse_utc(params["timeAt"], "timeAt")
        end = parse_utc(params["endTimeAt"], "endTimeAt") if "endTimeAt" in params else None
        if rel == "between" and end is None:
            raise BadRequestData("timerel=between needs endTimeAt")
        prop = params.get("timeproperty", "observedAt")
        if prop not in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
            raise BadRequestData(f"timeproperty {prop!r} is not observedAt, createdAt, modifiedAt or deletedAt")
        temporal = (prop, rel, at, end)
    if not (types or attrs or q or geo or csf or ids or params.get("idPattern") or temporal):
        raise BadRequestData("a registration query needs type, attrs, q or a geo-query (too wide)")
    if q is not None:
        attrs = attrs + sorted(t.split(".")[0] for t in q.attribute_terms())
    geo_attrs = [geo.geoproperty] if geo is not None else []
    wanted = matching.Wanted(
        ids=frozenset(ids), id_pattern=params.get("idPattern"),
        types=frozenset(ctx.expand_term(t) for t in types),
        attrs=frozenset(ctx.expand_term(a) for a in attrs + geo_attrs) if attrs else frozenset(),
        geo=geo, temporal=temporal,
    )
    return wanted, q, csf, scope
