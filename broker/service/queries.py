"""Query Entities (clause 5.7.2) and rendering: request parameters -> EntityFilter, pages -> responses.

Parameters arrive as the client wrote them (terms); this module parses each
query language (broker.query), expands its terms once with the request's
@context, and builds the EntityFilter the store evaluates (SQL for ids,
types, attribute presence and the geo bounding box; a Python predicate for
q, scopeQ and the exact geo relation, unless the store evaluates that one
itself: `Store.exact_geo`, PostgreSQL with PostGIS; plus a SQL prefilter
implied by q, broker.query.q_sql, which only narrows the candidates). Rendering turns a stored ENF
document into the asked representation: projection on ENF (attribute IRIs),
compaction with the request's @context, then normalized/concise/keyValues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.query.geo import bbox_for_prefilter, compile_geo, parse_geoquery
from broker.query.ordering import Ordering
from broker.query.projection import parse_attrs
from broker.query.q import compile_q
from broker.query.q_sql import Prefilter, q_prefilter
from broker.query.regex import compile_pattern
from broker.query.scope import compile_scope_query
from broker.query.types import compile_type_selection
from broker.service.patch import utc_now
from broker.service.view import View, linked_objects, split_list
from broker.store.base import Change, Doc, EntityFilter, QueryPage, Store, StoredEntity
from models.errors import BadRequestData, TooComplexQuery, TooManyResults
from models.normalize import TermMapper
from models.validation import check_uri

__all__ = ["Page", "QueryService", "QuerySpec", "Selector", "View", "split_list"]

MAX_ORDERED = 50_000
"""The most matching entities a query with orderBy sorts (all of them are read and sorted in Python)."""


@dataclass(slots=True)
class Page:
    """Pagination of a query (clause 5.5.9)."""

    limit: int
    offset: int
    count: bool

    @classmethod
    def from_params(cls, params: Mapping[str, str], default_limit: int, max_limit: int) -> Page:
        """limit (default `default_limit`, above `max_limit` TooManyResults), offset, count."""
        limit = _int(params, "limit", default_limit)
        offset = _int(params, "offset", 0)
        count = params.get("count", "false").lower() == "true"
        if limit > max_limit:
            raise TooManyResults(f"limit {limit} exceeds the maximum of {max_limit}")
        if limit == 0 and not count:
            raise BadRequestData("limit=0 is only allowed with count=true")
        return cls(limit, offset, count)


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequestData(f"{name} must be an integer, got {text!r}") from None
    if value < 0:
        raise BadRequestData(f"{name} must not be negative, got {value}")
    return value


@dataclass(slots=True)
class Selector:
    """One EntitySelector of clause 5.2.33: ids, idPattern and a type selection (any may be absent)."""

    ids: list[str] | None = None
    id_pattern: str | None = None
    type_text: str | None = None


@dataclass(slots=True)
class QuerySpec:
    """Everything that selects entities, before expansion."""

    selectors: list[Selector] = field(default_factory=list)
    attrs: list[str] | None = None
    q: str | None = None
    scope_q: str | None = None
    geo: tuple[Any, Any, Any, Any] | None = None  # georel, geometry, coordinates, geoproperty
    local: bool = False
    ordering: Ordering | None = None
    expand_values: tuple[str, ...] = ()  # attributes whose q values are expanded like terms (expandValues)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> QuerySpec:
        """The selection parameters of GET /entities (clause 6.4.3.2) and DELETE /entities (6.4.3.3)."""
        ids = split_list(params.get("id")) or None
        selector = Selector(ids, params.get("idPattern") or None, params.get("type") or None)
        geo = None
        if any(params.get(k) for k in ("georel", "geometry", "coordinates")):
            geo = (params.get("georel"), params.get("geometry"), params.get("coordinates"), params.get("geoproperty"))
        attrs = list(parse_attrs(params["attrs"])) if params.get("attrs") else None
        ordering = None
        if params.get("orderBy"):
            ordering = Ordering.from_params(params["orderBy"], params.get("orderFrom"), params.get("orderGeometry"),
                                            params.get("collation"))
        return cls([selector], attrs, params.get("q") or None, params.get("scopeQ") or None, geo,
                   params.get("local", "false").lower() == "true", ordering,
                   tuple(parse_attrs(params["expandValues"])) if params.get("expandValues") else ())

    def is_empty(self) -> bool:
        """Whether the query is too wide: clauses 5.7.2.4, 5.7.4.4 and 5.6.21.4 want a type selection,
        attribute names, q or a geo-query (or local scope); ids, idPattern and scopeQ alone are not enough."""
        has_types = any(s.type_text for s in self.selectors)
        return not (has_types or self.attrs or self.q or self.geo)

    def to_filter(self, ctx: TermMapper, *, exact_geo: bool = False) -> EntityFilter:
        """The EntityFilter of this query, terms expanded with `ctx`; InvalidQuery/BadRequestData on bad syntax.

        `exact_geo`: the store evaluates `EntityFilter.geo` itself, so the geo
        relation stays out of the predicate (it is still compiled: that
        validates the reference geometry the same way on every store).
        """
        expand = ctx.expand_term
        predicates: list[Callable[[Doc], bool]] = []
        ids = id_pattern = type_dnf = None
        if len(self.selectors) == 1:
            sel = self.selectors[0]
            ids = _check_ids(sel.ids)
            id_pattern = _check_pattern(sel.id_pattern)
            if sel.type_text and sel.type_text != "*":
                type_dnf = compile_type_selection(sel.type_text).dnf(expand)
        elif self.selectors:
            predicates.append(_selectors_predicate(self.selectors, expand))
        attrs_any = frozenset(expand(a) for a in self.attrs) if self.attrs else None
        prefilter: Prefilter | None = None
        if self.q:
            query = compile_q(self.q)
            predicates.append(query.compile(expand, expand_values=self.expand_values))
            prefilter = q_prefilter(query.root, expand)  # SQL the store adds: fewer candidates decoded
        if self.scope_q:
            scope = compile_scope_query(self.scope_q)
            predicates.append(lambda d: scope.matches(d.get("scope")))
        geo_bbox = geo = None
        if self.geo is not None:
            geoquery = parse_geoquery(*self.geo)
            geo_predicate = compile_geo(geoquery, expand)
            if not exact_geo:
                predicates.append(geo_predicate)
            geo = replace(geoquery, geoproperty=expand(geoquery.geoproperty))
            box = bbox_for_prefilter(geoquery)
            if box is not None:
                geo_bbox = (geo.geoproperty, box)
        return EntityFilter(ids, id_pattern, type_dnf, attrs_any, geo_bbox, _all(predicates), geo, prefilter)


def _check_ids(ids: Sequence[str] | None) -> list[str] | None:
    if ids is None:
        return None
    return [check_uri(i, "entity id") for i in ids]


def _check_pattern(pattern: str | None) -> str | None:
    if pattern is None:
        return None
    compile_pattern(pattern, "idPattern")
    return pattern


def _selectors_predicate(selectors: list[Selector], expand: Callable[[str], str]) -> Callable[[Doc], bool]:
    compiled = []
    for sel in selectors:
        ids = frozenset(_check_ids(sel.ids) or ()) or None
        checked = _check_pattern(sel.id_pattern)
        pattern = compile_pattern(checked) if checked is not None else None
        types = compile_type_selection(sel.type_text).compile(expand) if sel.type_text and sel.type_text != "*" else None
        compiled.append((ids, pattern, types))

    def predicate(doc: Doc) -> bool:
        for ids, pattern, types in compiled:
            if ids is not None and doc["id"] not in ids:
                continue
            if pattern is not None and not pattern.search(doc["id"]):
                continue
            if types is not None and not types(doc.get("type", ())):
                continue
            return True
        return False

    return predicate


def _all(predicates: list[Callable[[Doc], bool]]) -> Callable[[Doc], bool] | None:
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]
    return lambda d: all(p(d) for p in predicates)


class QueryService:
    """Query Entities over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def query(self, tenant: str, spec: QuerySpec, ctx: TermMapper, page: Page) -> QueryPage:
        """One page of matching entities (and the total with count=true)."""
        if spec.is_empty() and not spec.local:
            raise BadRequestData("too wide query: give a type, attrs, q, a geo-query or local=true (clause 5.7.2.4)")
        flt = spec.to_filter(ctx, exact_geo=self.store.exact_geo)
        if spec.ordering is None:
            return await self.store.query(tenant, flt, limit=page.limit, offset=page.offset, count=page.count)
        # clause 4.23: the order is over the whole result, before pagination; every match is read and sorted
        # here (id order first, so ties and both stores agree)
        everything = await self.store.query(tenant, flt, limit=MAX_ORDERED + 1, offset=0, count=False)
        if len(everything.entities) > MAX_ORDERED:
            raise TooComplexQuery(f"orderBy sorts at most {MAX_ORDERED} entities; narrow the query")
        ordered = spec.ordering.sort(everything.entities, ctx.expand_term)
        return QueryPage(ordered[page.offset:page.offset + page.limit], len(ordered) if page.count else None)

    async def linked(self, tenant: str, roots: Sequence[StoredEntity], view: View) -> dict[str, StoredEntity]:
        """The entities reachable from `roots` through Relationships, up to `view.join_level` hops (clause 4.5.23).

        The roots are included (a root may be linked from another); `containedBy` ids are not fetched.
        """
        found = {e.doc["id"]: e for e in roots}
        if view.join is None:
            return found
        frontier = list(roots)
        for _ in range(view.join_level):
            wanted = list(dict.fromkeys(t for e in frontier for t in linked_objects(e.doc)
                                        if t not in found and t not in view.contained_by))
            if not wanted:
                break
            got = await self.store.get_many(tenant, wanted)
            found.update(got)
            frontier = list(got.values())
        return found

    async def purge(self, tenant: str, spec: QuerySpec, ctx: TermMapper, *, keep: list[str] | None = None,
                    drop: list[str] | None = None) -> list[str]:
        """Purge Entities (clause 5.6.21): delete every matching entity, or with `drop`/`keep` only some of
        their attributes (entity members id, type and scope stay); returns the ids of the entities touched."""
        if keep is not None and drop is not None:
            raise BadRequestData("keep and drop cannot be used together (clause 6.4.3.3)")
        if spec.is_empty() and not spec.local and not (keep or drop):
            raise BadRequestData("too wide purge: give a type, attrs, q, a geo-query, keep, drop or local=true")
        flt = spec.to_filter(ctx, exact_geo=self.store.exact_geo)
        ids: list[str] = []
        while True:
            chunk = await self.store.query(tenant, flt, limit=1000, offset=len(ids), count=False)
            ids.extend(e.doc["id"] for e in chunk.entities)
            if len(chunk.entities) < 1000:
                break
        if not ids:
            return []
        if keep is None and drop is None:
            return await self.store.delete(tenant, ids)
        names = {ctx.expand_term(n) for n in (keep if keep is not None else drop) or ()}

        def strip(_id: str, current: StoredEntity | None) -> Change:
            if current is None:
                return Change(None, None, changed=False)
            doc = {k: v for k, v in current.doc.items()
                   if k in _KEPT or (k in names) == (keep is not None)}
            return Change(doc, _id, changed=len(doc) != len(current.doc))

        done = await self.store.modify(tenant, ids, strip, utc_now())
        return [i for i, r in done.items() if r is not None]


_KEPT = frozenset({"id", "type", "scope"})
