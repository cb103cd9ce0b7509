"""How entities are rendered for Retrieve and Query Entities: the `View` of a request.

A View reads the rendering parameters of clauses 6.4.3.2 and 6.5.3.1:
representation (`format`/`options`, 6.3.7), `sysAttrs` (6.3.11), `lang`
(4.15), `attrs`, `pick`/`omit` (4.21), `datasetId` (instances selected per
clause 5.7.1.4), and Linked Entity Retrieval (`join`, `joinLevel`,
`containedBy`, clause 4.5.23). Rendering works on ENF (attribute IRIs):
select instances, project, compact with the request's @context, convert to
the representation, then attach the Linked Entities:

- inline (4.5.23.2): each Relationship whose object is a stored entity gets
  an `entity` member (`entityList` for a ListRelationship or an object
  array) holding that entity rendered the same way; in the simplified
  representation the linked entity replaces the URI as the value;
- flat (4.5.23.3): the linked entities are appended to the array.

A Linked Entity is projected by the nested part of the projection term
that reached it (`locatedAt{id,name}`); a term without a nested part picks
it whole, and omit at one level does not reach the next. Loops end at an
entity already on the path (or named by `containedBy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.query.projection import ENTITY_MEMBERS, Projection, ProjectionTerm, parse_attrs, parse_projection
from broker.service.entities import with_system_attrs
from broker.store.base import Doc, StoredEntity
from models.errors import BadRequestData, OperationNotSupported
from models.expansion import compact_entity
from models.normalize import TermMapper
from models.representation import Representation, convert, pick_language
from models.validation import check_uri
from models.vocabulary import LANGUAGE_PROPERTY, LIST_RELATIONSHIP, RELATIONSHIP

__all__ = ["View", "linked_objects", "split_list"]

JOINS = ("inline", "flat")
_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})


def split_list(text: str | None) -> list[str]:
    """A comma-separated parameter as a list (empty items dropped)."""
    return [p.strip() for p in text.split(",") if p.strip()] if text else []


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequestData(f"{name} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise BadRequestData(f"{name} must be a positive integer, got {value}")
    return value


def _depth(terms: Iterable[ProjectionTerm]) -> int:
    return max((1 + _depth(t.linked) if t.linked is not None else 0 for t in terms), default=0)


def linked_objects(doc: Doc) -> list[str]:
    """The entity ids the Relationships and ListRelationships of an ENF document point to."""
    out: list[str] = []
    for name, value in doc.items():
        if name in _MEMBERS or not isinstance(value, list):
            continue
        for inst in value:
            if isinstance(inst, dict):
                out.extend(_targets(inst))
    return out


def _targets(inst: Mapping[str, Any]) -> list[str]:
    kind = inst.get("type")
    if kind == RELATIONSHIP:
        obj = inst.get("object")
        return [o for o in (obj if isinstance(obj, list) else [obj]) if isinstance(o, str)]
    if kind == LIST_RELATIONSHIP:
        return [o["object"] for o in inst.get("objectList") or () if isinstance(o, dict) and isinstance(o.get("object"), str)]
    return []


@dataclass(slots=True)
class View:
    """How entities are rendered: representation, sysAttrs, lang, ENF projections, datasets and joins."""

    representation: Representation = Representation.NORMALIZED
    sys_attrs: bool = False
    lang: str | None = None
    attrs: frozenset[str] | None = None  # expanded IRIs kept (clause 6.4.3.2 attrs)
    pick: Projection | None = None
    omit: Projection | None = None
    datasets: frozenset[str] | None = None  # datasetIds kept, "@none" for the default instance
    join: str | None = None  # "inline" | "flat" (clause 4.5.23); None or "@none": no Linked Entity retrieval
    join_level: int = 1
    contained_by: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_params(cls, params: Mapping[str, str], ctx: TermMapper, *, entity_maps: bool = False) -> View:
        """Read options, format, lang, attrs, pick, omit, datasetId, join, joinLevel and containedBy.

        `entity_maps`: the caller makes the EntityMap of `entityMap=true` (broker.federation.entitymaps).
        No parameters at all (most reads) is the default view, made without reading them one by one.
        """
        if not params:
            return cls()
        options = set(split_list(params.get("options")))
        fmt = params.get("format") or None
        try:
            representation = Representation.from_options(options, fmt)
        except ValueError:
            raise BadRequestData(f"unknown format {fmt!r}") from None
        if fmt is None and options & {"keyValues", "simplified"} and "concise" in options:
            raise BadRequestData("options keyValues and concise exclude each other")
        attrs = None
        if params.get("attrs"):
            if params.get("pick") or params.get("omit"):
                raise BadRequestData("attrs cannot be combined with pick or omit (clause 6.4.3.2)")
            attrs = frozenset(ctx.expand_term(a) for a in parse_attrs(params["attrs"]))
        pick = parse_projection(params["pick"]) if params.get("pick") else None
        omit = parse_projection(params["omit"]) if params.get("omit") else None
        if pick is not None and omit is not None:
            raise BadRequestData("pick and omit cannot be used together")
        datasets = None
        if params.get("datasetId"):
            datasets = frozenset(d if d == "@none" else check_uri(d, "datasetId") for d in split_list(params["datasetId"]))
        join = params.get("join") or None
        if join not in (None, "@none", *JOINS):
            raise BadRequestData(f"join must be flat, inline or @none, got {join!r}")
        join = None if join == "@none" else join
        level = params.get("joinLevel")
        join_level = _positive_int(level, "joinLevel") if level else 1
        contained = frozenset(check_uri(i, "containedBy") for i in split_list(params.get("containedBy")))
        if not entity_maps and (params.get("entityMap") or "").lower() == "true":
            # an EntityMap is made by Query Entities, Retrieve Entity and the temporal queries (5.14.4, 5.7.1.4, 5.14.5)
            raise OperationNotSupported("EntityMaps (clause 4.5.25) are made by the query and retrieve operations only")
        projection = pick or omit
        depth = _depth(projection.terms) if projection is not None else 0
        if depth and join is None:
            raise BadRequestData("a projection into Linked Entities needs join=inline or join=flat (clause 5.7.2.4)")
        if depth > join_level:
            raise BadRequestData(f"the projection is {depth} levels deep, deeper than joinLevel={join_level}")
        return cls(representation, "sysAttrs" in options, params.get("lang") or None, attrs, pick, omit,
                   datasets, join, join_level, contained)

    # ------------------------------------------------------------------ selection

    def picked_attributes(self) -> list[str] | None:
        """The attribute names of `pick` when it names no entity member: an entity must hold one (5.7.2.4)."""
        if self.pick is None:
            return None
        names = self.pick.names()
        return None if any(n in ENTITY_MEMBERS for n in names) else list(names)

    def select(self, stored: StoredEntity, expand: Callable[[str], str], depth: int = 0,
               terms: tuple[ProjectionTerm, ...] | None = None, keep: bool = True) -> Doc:
        """The ENF document this view shows at `depth` (0: the entity asked for), before compaction."""
        doc: Doc = with_system_attrs(stored) if self.sys_attrs else stored.doc
        if depth == 0:
            if self.attrs is not None:
                doc = {k: v for k, v in doc.items() if k in _MEMBERS or k in self.attrs}
            if self.datasets is not None:
                doc = _select_datasets(doc, self.datasets)
            projection = self.pick or self.omit
            terms, keep = (projection.terms, self.pick is not None) if projection is not None else (None, True)
        if terms is not None:
            doc = self.pick_terms(doc, terms, expand) if keep else self.omit_terms(doc, terms, expand)
        return doc

    @staticmethod
    def pick_terms(doc: Doc, terms: tuple[ProjectionTerm, ...], expand: Callable[[str], str]) -> Doc:
        """`doc` reduced to the members `terms` name (nested parts are for Linked Entities)."""
        return Projection("", terms).pick(doc, expand)

    @staticmethod
    def omit_terms(doc: Doc, terms: tuple[ProjectionTerm, ...], expand: Callable[[str], str]) -> Doc:
        """`doc` without the members `terms` name; a term with a nested part keeps its attribute."""
        return Projection("", terms).omit(doc, expand)

    # ------------------------------------------------------------------ rendering

    def render(self, stored: StoredEntity, ctx: TermMapper) -> dict[str, Any]:
        """One stored entity in this view, in the terms of `ctx` (no Linked Entities)."""
        return self._finish(self.select(stored, ctx.expand_term), ctx)

    def render_entity(self, stored: StoredEntity, ctx: TermMapper,
                      linked: Mapping[str, StoredEntity] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """Retrieve Entity: one entity, or with join=flat the array of it and its Linked Entities."""
        out: dict[str, Any] | list[dict[str, Any]] = self._render([stored], ctx, linked or {}, top_level=False)
        return out

    def render_entities(self, entities: list[StoredEntity], ctx: TermMapper,
                        linked: Mapping[str, StoredEntity] | None = None) -> list[dict[str, Any]]:
        """Query Entities: the array of entities (with join=flat, their Linked Entities appended)."""
        out = self._render(entities, ctx, linked or {}, top_level=True)
        assert isinstance(out, list)
        return out

    def _render(self, entities: list[StoredEntity], ctx: TermMapper, linked: Mapping[str, StoredEntity],
                *, top_level: bool) -> Any:
        flat: dict[str, dict[str, Any]] | None = {} if self.join == "flat" else None
        rendered = [self._one(s, ctx, linked, 0, None, True, frozenset(), flat) for s in entities]
        if flat is None:
            return rendered if top_level else rendered[0]
        shown = {s.doc["id"] for s in entities}
        return rendered + [e for i, e in flat.items() if i not in shown]

    def _one(self, stored: StoredEntity, ctx: TermMapper, linked: Mapping[str, StoredEntity], depth: int,
             terms: tuple[ProjectionTerm, ...] | None, keep: bool, path: frozenset[str],
             flat: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
        expand = ctx.expand_term
        doc = self.select(stored, expand, depth, terms, keep)
        children: dict[tuple[str, int], list[dict[str, Any]]] = {}
        if self.join is not None and depth < self.join_level:
            path = path | {stored.doc["id"]}
            if depth == 0:
                projection = self.pick or self.omit
                terms, keep = (projection.terms, self.pick is not None) if projection else (None, True)
            nested = {expand(t.name): t.linked for t in terms or () if t.name not in ENTITY_MEMBERS}
            for name, value in doc.items():
                if name in _MEMBERS or not isinstance(value, list):
                    continue
                if keep and terms is not None:
                    sub_terms, sub_keep = nested.get(name), True
                else:
                    sub_terms, sub_keep = (nested.get(name), False) if name in nested else (None, True)
                for index, inst in enumerate(value):
                    targets = [t for t in _targets(inst) if t in linked and t not in path and t not in self.contained_by]
                    if flat is None:
                        if targets:
                            children[(name, index)] = [
                                self._one(linked[t], ctx, linked, depth + 1, sub_terms, sub_keep, path, flat)
                                for t in targets]
                        continue
                    for t in targets:
                        if t not in flat:  # appended once, in the order found, whichever path reaches it first
                            flat[t] = {}
                            flat[t] = self._one(linked[t], ctx, linked, depth + 1, sub_terms, sub_keep, path, flat)
        return self._finish(doc, ctx, children)

    def shows_nothing(self, stored: StoredEntity, expand: Callable[[str], str]) -> bool:
        """Whether Retrieve Entity must answer 404 (clause 5.7.1.4, 4.21): none of the `attrs`, or an empty projection."""
        if self.attrs is not None and not any(a in stored.doc for a in self.attrs):
            return True
        if self.pick is None and self.omit is None:
            return False
        return not any(k != "@context" for k in self.select(stored, expand))

    def _finish(self, doc: Doc, ctx: TermMapper,
                children: Mapping[tuple[str, int], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
        entity = compact_entity(doc, ctx, sys_attrs=self.sys_attrs)
        if self.lang is not None and self.representation is not Representation.SIMPLIFIED:
            entity = _languages(entity, self.lang)
        out = convert(entity, self.representation, lang=self.lang)
        for (iri, index), kids in (children or {}).items():
            _attach(out, ctx.compact_iri(iri), index, doc[iri], kids, self.representation)
        return out


def _select_datasets(doc: Doc, wanted: frozenset[str]) -> Doc:
    """Clause 5.7.1.4: only the instances with a listed datasetId ("@none": the default instance)."""
    out: Doc = {}
    for name, value in doc.items():
        if name in _MEMBERS or not isinstance(value, list):
            out[name] = value
            continue
        kept = [i for i in value if isinstance(i, dict) and i.get("datasetId", "@none") in wanted]
        if kept:
            out[name] = kept
    return out


def _attach(out: dict[str, Any], name: str, index: int, instances: list[Doc], kids: list[dict[str, Any]],
            representation: Representation) -> None:
    """Put the rendered Linked Entities of instance `index` of attribute `name` into the rendered entity."""
    inst = instances[index]
    many = inst.get("type") == LIST_RELATIONSHIP or isinstance(inst.get("object"), list)
    value = out.get(name)
    if representation is Representation.SIMPLIFIED:
        replacement: Any = kids if many else kids[0]
        if isinstance(value, dict) and set(value) == {"dataset"}:
            value["dataset"][inst.get("datasetId", "@none")] = replacement
        else:
            out[name] = replacement
        return
    target = value[index] if isinstance(value, list) else value
    if isinstance(target, dict):
        target["entityList" if many else "entity"] = kids if many else kids[0]


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
