"""TemporalService: query and write the history of entities (clauses 5.6.11-5.6.16, 5.7.3, 5.7.4).

Read-your-writes: every operation first lets the recorder apply what the
change log holds (`HistoryRecorder.catch_up`), so history includes every
write committed before the request, whichever API made it.

Selection follows clause 5.7.4.4 on history alone, so an entity that only
exists in history (written through the temporal API, or deleted since) is
found like any other: ids, idPattern and the type selection are matched
against the types kept with history; an entity stays only if some instance
of the concerned attributes lies in the time range (S1); q and geo-queries
are evaluated against the instances in the range, an entity matching when
some instance does (S2, S3). scopeQ is evaluated on the entity's current
scope: history keeps no scope.

Paging: entities by limit/offset (NGSILD-Results-Count with count=true);
instances by a budget of `limit` per response over every entity and
attribute of the page (render.cut), with 206 and Content-Range (clause
6.3.10) when the budget cuts the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from broker.query.geo import parse_geoquery
from broker.query.q import compile_q
from broker.query.regex import compile_pattern
from broker.query.types import compile_type_selection
from broker.service.patch import utc_now
from broker.service.queries import Page, QuerySpec, Selector
from broker.store.base import Store
from broker.temporal import render
from broker.temporal.model import EntityRow, HistoryRow, instance_id, parse_instance_id, to_us, value_row
from broker.temporal.query import TemporalQuery
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.storage import HistoryStorage, InstanceHit
from models.errors import BadRequestData, InvalidRequest, ResourceNotFound
from models.expansion import compact_instance, expand_instance
from models.normalize import TermMapper, normalize_attribute
from models.validation import check_name, check_uri, is_uri
from models.vocabulary import ENTITY_CORE, PROPERTY

DEFAULT_LIMIT = 10_000
"""Attribute instances in one temporal response unless configured (METROPOLE_BROKER_TEMPORAL_LIMIT)."""

_ALL = 1 << 62
"""per_attr for reads that want every instance in the range."""


@dataclass(slots=True)
class TemporalResult:
    """Rendered entities, and the DateTime range when the response is partial (206)."""

    entities: list[dict[str, Any]]
    total: int | None = None
    content_range: str | None = None


def _attr_name(name: str) -> str:
    """An attribute name of a path: 4.6.2 name or URI, BadRequestData otherwise (clauses 5.6.13-5.6.15)."""
    return check_name(name, "attribute name")


def _instance_uri(text: str) -> str:
    if not is_uri(text):
        raise BadRequestData(f"instanceId must be a URI, got {text!r}")
    return text


def _narrowing(spec: QuerySpec, ctx: TermMapper) -> tuple[list[str] | None, list[str] | None]:
    """The ids and the types one of which a selected entity has (None: any), over every selector.

    The storage narrows the entities by them, so that only candidates become
    Python objects; the exact selection (idPattern, conjunctions) is checked after.
    """
    ids: set[str] = set()
    types: set[str] = set()
    any_id = any_type = False
    for sel in spec.selectors or [Selector()]:
        if sel.ids:
            ids.update(sel.ids)
        else:
            any_id = True
        if sel.type_text and sel.type_text != "*":
            types.update(t for conj in compile_type_selection(sel.type_text).dnf(ctx.expand_term) for t in conj)
        else:
            any_type = True
    return (None if any_id else sorted(ids)), (None if any_type else sorted(types))


class TemporalService:
    """History reads and direct writes over a HistoryStorage kept up to date by a HistoryRecorder."""

    def __init__(self, store: Store, history: HistoryStorage, recorder: HistoryRecorder | None, *,
                 limit: int = DEFAULT_LIMIT, catch_up_timeout: float = 30.0) -> None:
        self.store = store
        self.history = history
        self.recorder = recorder
        self.limit = max(1, limit)
        self.catch_up_timeout = catch_up_timeout
        self._tenants: set[str] = set()  # tenants this service saw committed; a tenant is never deleted

    async def _ensure_tenant(self, tenant: str) -> None:
        """store.ensure_tenant once per tenant: it was a write transaction per /v2/notify (issue 16)."""
        if tenant not in self._tenants:
            await self.store.ensure_tenant(tenant)  # its own transaction, committed when it returns
            self._tenants.add(tenant)

    async def _current(self) -> None:
        """Read-your-writes: history holds every change committed before this call."""
        if self.recorder is not None:
            await self.recorder.catch_up(self.catch_up_timeout)

    async def _known(self, tenant: str, entity_id: str) -> EntityRow | None:
        return await self.history.entity(tenant, entity_id)

    # ------------------------------------------------------------ reads

    async def _select(self, tenant: str, spec: QuerySpec, ctx: TermMapper) -> list[EntityRow]:
        """The entities of history matching the entity selectors (ids, idPattern, types)."""
        flt = QuerySpec(spec.selectors).to_filter(ctx)
        ids, types = _narrowing(spec, ctx)
        rows = await self.history.entities(tenant, ids=ids, types_any=types)
        if flt.ids is not None:
            wanted = set(flt.ids)
            rows = [r for r in rows if r.entity_id in wanted]
        if flt.id_pattern is not None:
            pattern = compile_pattern(flt.id_pattern)
            rows = [r for r in rows if pattern.search(r.entity_id)]
        if flt.type_dnf is not None:
            rows = [r for r in rows if any(conj <= set(r.types) for conj in flt.type_dnf)]
        if flt.predicate is not None:  # several selectors
            rows = [r for r in rows if flt.predicate({"id": r.entity_id, "type": r.types})]
        return rows

    async def _filter(self, tenant: str, rows: list[EntityRow], spec: QuerySpec, ctx: TermMapper,
                      attrs: list[str] | None, tq: TemporalQuery) -> list[EntityRow]:
        """S1-S4 of clause 5.7.4.4: data in the range, then q and geo on those instances, then scopeQ."""
        if not rows:
            return rows
        rng = tq.time_range()
        series = await self.history.series(tenant, [r.entity_id for r in rows], attrs, rng, datasets=tq.datasets)
        present = {e for e, _ in series}
        rows = [r for r in rows if r.entity_id in present]
        if rows and (spec.q or spec.geo):
            predicate = QuerySpec([], None, spec.q, None, spec.geo).to_filter(ctx).predicate
            needed: set[str] = set()
            if spec.q:
                needed |= {ctx.expand_term(t) for t in compile_q(spec.q).attribute_terms()}
            if spec.geo:
                needed.add(ctx.expand_term(parse_geoquery(*spec.geo).geoproperty))
            hits = await self.history.instances(tenant, [r.entity_id for r in rows], sorted(needed), rng, _ALL, False,
                                                datasets=tq.datasets)
            docs: dict[str, dict[str, Any]] = {r.entity_id: {"id": r.entity_id, "type": r.types} for r in rows}
            for h in hits:
                inst = orjson.loads(h.instance)
                if "deletedAt" not in inst:  # a deletion is no value to match
                    docs[h.entity_id].setdefault(h.attr, []).append(inst)
            rows = [r for r in rows if predicate is None or predicate(docs[r.entity_id])]
        if rows and spec.scope_q:
            scope = QuerySpec([], None, None, spec.scope_q).to_filter(ctx).predicate
            current = await self.store.get_many(tenant, [r.entity_id for r in rows])
            rows = [r for r in rows if r.entity_id in current and (scope is None or scope(current[r.entity_id].doc))]
        return rows

    @staticmethod
    def _concerned(attrs: list[str] | None, tq: TemporalQuery, ctx: TermMapper) -> list[str] | None:
        """The attribute IRIs a read is about: attrs, or the attributes pick names; None for all."""
        names = attrs
        if names is None and tq.pick is not None:
            names = [n for n in tq.pick.names() if n not in ("id", "type", "scope")] or None
        return [ctx.expand_term(a) for a in names] if names else None

    async def query(self, tenant: str, spec: QuerySpec, ctx: TermMapper, tq: TemporalQuery, page: Page, *,
                    descending: bool = False) -> TemporalResult:
        """Query Temporal Evolution of Entities (clause 5.7.4)."""
        if spec.is_empty() and not spec.local:
            raise BadRequestData("a temporal query needs a type, attrs, q, a geo-query or local=true (clause 5.7.4.4)")
        spec.to_filter(ctx)  # q, scopeQ and the geo-query checked whether or not any history is there
        await self._current()
        attrs = self._concerned(spec.attrs, tq, ctx)
        rows = await self._filter(tenant, await self._select(tenant, spec, ctx), spec, ctx, attrs, tq)
        if descending:
            rows.reverse()
        result = await self._render(tenant, rows[page.offset : page.offset + page.limit], attrs, ctx, tq)
        result.total = len(rows) if page.count else None
        return result

    async def retrieve(self, tenant: str, entity_id: str, attrs: list[str] | None, ctx: TermMapper, tq: TemporalQuery) -> TemporalResult:
        """Retrieve Temporal Evolution of an Entity (clause 5.7.3): 404 when nothing of it is in the range."""
        check_uri(entity_id, "entity id")
        await self._current()
        row = await self._known(tenant, entity_id)
        if row is None:
            raise ResourceNotFound(f"no temporal entity {entity_id}")
        concerned = self._concerned(attrs, tq, ctx)
        if not await self.history.series(tenant, [entity_id], concerned, tq.time_range(), datasets=tq.datasets):
            raise ResourceNotFound(f"temporal entity {entity_id} has no instance of the asked attributes in the asked range")
        result = await self._render(tenant, [row], concerned, ctx, tq)
        if not result.entities or not result.entities[0]:
            raise ResourceNotFound(f"nothing of temporal entity {entity_id} is left after pick/omit")
        return result

    async def _render(self, tenant: str, rows: list[EntityRow], attrs: list[str] | None, ctx: TermMapper,
                      tq: TemporalQuery) -> TemporalResult:
        if not rows:
            return TemporalResult([])
        out = {r.entity_id: render.head(r, ctx) for r in rows}
        ids = list(out)
        rng = tq.time_range()
        if tq.mode == "aggregatedValues":
            origin = rng.start
            if origin is None:  # periods start at the first instance when the query sets no start
                origin = await self.history.first_time(tenant, ids, attrs, rng, datasets=tq.datasets) or 0
            buckets = await self.history.aggregate(tenant, ids, attrs, rng, origin, tq.period_us, datasets=tq.datasets,
                                                   distinct="distinctCount" in tq.aggr_methods)
            names: dict[str, str] = {}  # per attribute, and per bound: a month of hours is 744 buckets
            bounds: dict[int, str] = {}
            for b in buckets:
                name = names.get(b.attr)
                if name is None:
                    name = names[b.attr] = ctx.compact_iri(b.attr)
                attr = out[b.entity_id].setdefault(name, {"type": PROPERTY})
                start, end = render.period(b, origin, tq, rng, bounds)
                for method in tq.aggr_methods:
                    attr.setdefault(method, []).append([render.aggregate(b, method), start, end])
            return TemporalResult([render.project(e, tq, ctx) for e in out.values()])
        partial = False
        hits: list[InstanceHit] = []
        fetched: set[tuple[str, str]] = set()
        if tq.pick is None or attrs is not None:  # a pick of id/type alone needs no instance
            budget = self.limit
            newest = tq.last_n is not None
            per_attr = tq.last_n if tq.last_n is not None else budget + 1
            hits = await self.history.instances(tenant, ids, attrs, rng, per_attr, newest, total=budget + 1,
                                                datasets=tq.datasets)
            fetched = {(h.entity_id, h.attr) for h in hits}
            hits, partial = render.cut(hits, budget, newest)
        for h in hits:
            inst = orjson.loads(h.instance)
            inst["instanceId"] = instance_id(h.iid)
            entity = out[h.entity_id]
            key = ctx.compact_iri(h.attr)
            if tq.mode == "temporalValues":
                render.add_value(entity, key, inst, h.time_us, tq, ctx)
            else:
                shown = compact_instance(inst, ctx, sys_attrs=tq.sys_attrs)
                shown["instanceId"] = inst["instanceId"]
                if "deletedAt" in inst:
                    shown["deletedAt"] = inst["deletedAt"]
                entity.setdefault(key, []).append(shown)
        if partial:
            # an attribute whose instances all fall on later pages is there, empty
            series = await self.history.series(tenant, ids, attrs, rng, datasets=tq.datasets)
            missing = {(e, a) for e, a in series | fetched if ctx.compact_iri(a) not in out[e]}
            if missing and tq.mode == "temporalValues":  # an empty series still says its kind
                firsts = await self.history.instances(tenant, sorted({e for e, _ in missing}), sorted({a for _, a in missing}),
                                                      rng, 1, False, datasets=tq.datasets)
                for h in firsts:
                    if (h.entity_id, h.attr) in missing:
                        out[h.entity_id][ctx.compact_iri(h.attr)] = render.empty_values(orjson.loads(h.instance))
            for entity_id, attr in missing:
                out[entity_id].setdefault(ctx.compact_iri(attr), [])
        if tq.mode == "temporalValues":
            for entity in out.values():
                render.single_slots_as_objects(entity)
        result = TemporalResult([render.project(e, tq, ctx) for e in out.values()])
        if partial:
            result.content_range = render.content_range(tq, [h.time_us for h in hits])
        return result

    # ------------------------------------------------------------ writes

    async def write(self, tenant: str, body: Any, ctx: TermMapper, *, entity_id: str | None = None) -> bool:
        """Create or Update Temporal Representation (5.6.11) or Add Attributes (5.6.12); whether the entity is new.

        An instance whose time (observedAt, else modifiedAt) and datasetId are
        already stored for the attribute replaces the stored one.
        """
        if not isinstance(body, dict):
            raise BadRequestData("a temporal entity must be a JSON object")
        eid = check_uri(entity_id if entity_id is not None else body.get("id"), "entity id")
        await self._current()
        old = await self._known(tenant, eid)
        if entity_id is not None and old is None:
            raise ResourceNotFound(f"no temporal entity {eid}")
        types, rows = self._temporal_rows(tenant, eid, body, ctx, old.types if old is not None else None,
                                          adding=entity_id is not None)
        await self._ensure_tenant(tenant)  # a tenant written to through the temporal API exists (clause 4.14)
        await self.history.write([EntityRow(tenant, eid, types, None)], rows)
        return old is None

    async def write_many(self, tenant: str, items: Sequence[tuple[dict[str, Any], TermMapper]]) -> None:
        """`write` of several entities (a notification's), in one history transaction.

        The rows are those that writing them one after the other stores (an entity
        given twice: its second instances replace the first's, its types add up);
        one read of the known entities, one tenant check, one write instead of
        three round trips and a commit per entity. Nothing is stored if one is invalid.
        """
        await self._current()
        eids = [check_uri(body.get("id") if isinstance(body, dict) else None, "entity id") for body, _ in items]
        known = {r.entity_id: r.types for r in await self.history.entities(tenant, ids=list(dict.fromkeys(eids)))}
        entities: list[EntityRow] = []
        rows: list[HistoryRow] = []
        for eid, (body, ctx) in zip(eids, items, strict=True):
            types, more = self._temporal_rows(tenant, eid, body, ctx, known.get(eid), adding=False)
            known[eid] = types
            entities.append(EntityRow(tenant, eid, types, None))
            rows.extend(more)
        if not entities:
            return
        await self._ensure_tenant(tenant)
        await self.history.write(entities, rows)

    @staticmethod
    def _temporal_rows(tenant: str, eid: str, body: dict[str, Any], ctx: TermMapper, old_types: list[str] | None,
                       *, adding: bool) -> tuple[list[str], list[HistoryRow]]:
        """The types and history rows of one temporal entity body (old_types: those already stored, if any)."""
        types_raw = body.get("type", [])
        if not adding and not types_raw:
            raise BadRequestData("a temporal entity needs a type")
        types = [ctx.expand_term(check_name(t, "entity type"))  # a dict or list is a 400, not a 500 (fuzz)
                 for t in (types_raw if isinstance(types_raw, list) else [types_raw])]
        if old_types is not None:  # clause 5.6.11.4: new type names are added to the entity's
            types = old_types + [t for t in types if t not in old_types]
        # one moment per entity written (millisecond text, as system attributes carry): reading the
        # clock per instance was 7 % of a 100-entity /v2/notify's CPU (py-spy)
        stamp = utc_now()
        now_us = to_us(stamp)
        rows: list[HistoryRow] = []
        for name, value in body.items():
            if name in ENTITY_CORE:
                continue
            instances = value if isinstance(value, list) else [value]
            for raw in instances:
                inst = expand_instance(normalize_attribute(name, raw), ctx)
                inst.setdefault("createdAt", stamp)
                inst.setdefault("modifiedAt", stamp)
                rows.append(value_row(tenant, eid, ctx.expand_term(name), inst, now_us))
        return types, rows

    async def delete_entity(self, tenant: str, entity_id: str) -> None:
        """Delete Temporal Representation of an Entity (5.6.16)."""
        check_uri(entity_id, "entity id")
        await self._current()
        if not await self.history.delete_entity(tenant, entity_id):
            raise ResourceNotFound(f"no temporal entity {entity_id}")

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, ctx: TermMapper, dataset_id: str | None, delete_all: bool) -> None:
        """Delete Attribute from Temporal Representation (5.6.13): the default instance, a datasetId, or all."""
        check_uri(entity_id, "entity id")
        _attr_name(attr)
        if dataset_id is not None:
            check_uri(dataset_id, "datasetId")
        await self._current()
        if await self._known(tenant, entity_id) is None:
            raise ResourceNotFound(f"no temporal entity {entity_id}")
        target = None if delete_all else (dataset_id or "")
        if not await self.history.delete_attr(tenant, entity_id, ctx.expand_term(attr), target):
            raise ResourceNotFound(f"no temporal attribute {attr} on {entity_id}")

    async def _instance(self, tenant: str, entity_id: str, attr: str, iid_text: str, ctx: TermMapper) -> tuple[str, int, bytes]:
        """The stored instance a path names; BadRequestData for malformed parts, ResourceNotFound for absent ones."""
        check_uri(entity_id, "entity id")
        _attr_name(attr)
        _instance_uri(iid_text)
        await self._current()
        if await self._known(tenant, entity_id) is None:
            raise ResourceNotFound(f"no temporal entity {entity_id}")
        name = ctx.expand_term(attr)
        iid = parse_instance_id(iid_text)
        stored = None if iid is None else await self.history.get_instance(tenant, entity_id, name, iid)
        if iid is None or stored is None:
            raise ResourceNotFound(f"no instance {iid_text} of {attr} on {entity_id}")
        return name, iid, stored

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid_text: str, ctx: TermMapper) -> None:
        """Delete Attribute instance from Temporal Representation (5.6.15)."""
        name, iid, _ = await self._instance(tenant, entity_id, attr, iid_text, ctx)
        if not await self.history.delete_instance(tenant, entity_id, name, iid):
            raise ResourceNotFound(f"no instance {iid_text} of {attr} on {entity_id}")

    async def patch_instance(self, tenant: str, entity_id: str, attr: str, iid_text: str, body: Any, ctx: TermMapper) -> None:
        """Modify Attribute instance in Temporal Representation (5.6.14)."""
        name, iid, stored = await self._instance(tenant, entity_id, attr, iid_text, ctx)
        if not isinstance(body, dict):
            raise BadRequestData("an attribute instance must be a JSON object")
        current = orjson.loads(stored)
        fragment = expand_instance(normalize_attribute(attr, {"type": current.get("type", PROPERTY), **body}), ctx)
        merged = {**current, **fragment, "modifiedAt": utc_now()}
        if merged.get("datasetId", "") != current.get("datasetId", ""):
            raise InvalidRequest("the datasetId of an instance cannot change")
        row = value_row(tenant, entity_id, name, merged, to_us(merged["modifiedAt"]))
        await self.history.replace_instance(tenant, entity_id, name, iid, row)
