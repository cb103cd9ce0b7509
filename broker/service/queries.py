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

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.query.geo import bbox_for_prefilter, compile_geo, parse_geoquery
from broker.query.projection import Projection, parse_attrs, parse_projection
from broker.query.q import compile_q
from broker.query.q_sql import Prefilter, q_prefilter
from broker.query.scope import compile_scope_query
from broker.query.types import compile_type_selection
from broker.service.entities import with_system_attrs
from broker.store.base import Doc, EntityFilter, QueryPage, StoredEntity, Store
from models.errors import BadRequestData, InvalidQuery, TooManyResults
from models.expansion import TermMapper, compact_entity
from models.representation import Representation, convert, pick_language
from models.validation import check_uri
from models.vocabulary import LANGUAGE_PROPERTY


def split_list(text: str | None) -> list[str]:
    """A comma-separated parameter as a list (empty items dropped)."""
    return [p.strip() for p in text.split(",") if p.strip()] if text else []


@dataclass(slots=True)
class View:
    """How entities are rendered: representation, sysAttrs, lang, and ENF projections."""

    representation: Representation = Representation.NORMALIZED
    sys_attrs: bool = False
    lang: str | None = None
    attrs: frozenset[str] | None = None  # expanded IRIs kept (clause 6.4.3.2 attrs)
    pick: Projection | None = None
    omit: Projection | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], ctx: TermMapper) -> "View":
        """Read options, format, lang, attrs, pick and omit."""
        options = set(split_list(params.get("options")))
        fmt = params.get("format")
        try:
            representation = Representation.from_options(options, fmt)
        except ValueError:
            raise BadRequestData(f"unknown format {fmt!r}") from None
        if "keyValues" in options and "concise" in options:
            raise BadRequestData("options keyValues and concise exclude each other")
        attrs = None
        if params.get("attrs"):
            attrs = frozenset(ctx.expand_term(a) for a in parse_attrs(params["attrs"]))
        pick = parse_projection(params["pick"]) if params.get("pick") else None
        omit = parse_projection(params["omit"]) if params.get("omit") else None
        if pick is not None and omit is not None:
            raise BadRequestData("pick and omit cannot be used together")
        return cls(representation, "sysAttrs" in options, params.get("lang") or None, attrs, pick, omit)

    def render(self, stored: StoredEntity, ctx: TermMapper) -> dict[str, Any]:
        """One stored entity in this view, in the terms of `ctx`."""
        doc: Doc = with_system_attrs(stored) if self.sys_attrs else stored.doc
        if self.attrs is not None:
            doc = {k: v for k, v in doc.items() if k in _MEMBERS or k in self.attrs}
        expand = ctx.expand_term
        if self.pick is not None:
            doc = self.pick.pick(doc, expand)
        elif self.omit is not None:
            doc = self.omit.omit(doc, expand)
        entity = compact_entity(doc, ctx, sys_attrs=self.sys_attrs)
        if self.lang is not None and self.representation is not Representation.SIMPLIFIED:
            entity = _languages(entity, self.lang)
        return convert(entity, self.representation, lang=self.lang)


_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})


def _languages(entity: dict[str, Any], lang: str) -> dict[str, Any]:
    """Clause 4.15: with `lang`, a LanguageProperty is rendered as a Property in the chosen language."""
    out = dict(entity)
    for name, value in entity.items():
        instances = value if isinstance(value, list) else [value]
        if not any(isinstance(i, dict) and i.get("type") == LANGUAGE_PROPERTY for i in instances):
            continue
        converted = []
        for inst in instances:
            if isinstance(inst, dict) and inst.get("type") == LANGUAGE_PROPERTY:
                lm = inst["languageMap"]
                chosen = pick_language(lm, lang)
                tag = next((t for t, v in lm.items() if v == chosen), "@none")
                inst = {k: v for k, v in inst.items() if k != "languageMap"}
                inst.update({"type": "Property", "value": chosen, "lang": tag})
            converted.append(inst)
        out[name] = converted if isinstance(value, list) else converted[0]
    return out


@dataclass(slots=True)
class Page:
    """Pagination of a query (clause 5.5.9)."""

    limit: int
    offset: int
    count: bool

    @classmethod
    def from_params(cls, params: Mapping[str, str], default_limit: int, max_limit: int) -> "Page":
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

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "QuerySpec":
        """The selection parameters of GET /entities (clause 6.4.3.2) and DELETE /entities (6.4.3.3)."""
        ids = split_list(params.get("id")) or None
        selector = Selector(ids, params.get("idPattern") or None, params.get("type") or None)
        geo = None
        if any(params.get(k) for k in ("georel", "geometry", "coordinates")):
            geo = (params.get("georel"), params.get("geometry"), params.get("coordinates"), params.get("geoproperty"))
        attrs = list(parse_attrs(params["attrs"])) if params.get("attrs") else None
        return cls([selector], attrs, params.get("q") or None, params.get("scopeQ") or None, geo,
                   params.get("local", "false").lower() == "true")

    def is_empty(self) -> bool:
        """Whether nothing restricts the query (clause 5.7.2 then wants BadRequestData, unless local)."""
        has_selector = any(s.ids or s.id_pattern or s.type_text for s in self.selectors)
        return not (has_selector or self.attrs or self.q or self.scope_q or self.geo)

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
            predicates.append(query.compile(expand))
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
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidQuery(f"idPattern {pattern!r} is not a valid regular expression: {exc}") from None
    return pattern


def _selectors_predicate(selectors: list[Selector], expand: Callable[[str], str]) -> Callable[[Doc], bool]:
    compiled = []
    for sel in selectors:
        ids = frozenset(_check_ids(sel.ids) or ()) or None
        pattern = re.compile(_check_pattern(sel.id_pattern)) if sel.id_pattern else None
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
            raise BadRequestData("a query needs at least one of id, idPattern, type, attrs, q, scopeQ or a geo-query")
        flt = spec.to_filter(ctx, exact_geo=self.store.exact_geo)
        return await self.store.query(tenant, flt, limit=page.limit, offset=page.offset, count=page.count)

    async def purge(self, tenant: str, spec: QuerySpec, ctx: TermMapper) -> list[str]:
        """Purge Entities (clause 5.6.21): delete every matching entity; returns the deleted ids."""
        if spec.is_empty():
            raise BadRequestData("purge needs a type, attrs, q, a geo-query or a scope query (too wide query)")
        flt = spec.to_filter(ctx, exact_geo=self.store.exact_geo)
        ids: list[str] = []
        while True:
            chunk = await self.store.query(tenant, flt, limit=1000, offset=len(ids), count=False)
            ids.extend(e.doc["id"] for e in chunk.entities)
            if len(chunk.entities) < 1000:
                break
        return await self.store.delete(tenant, ids) if ids else []
