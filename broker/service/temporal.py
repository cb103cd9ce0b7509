"""TemporalService: query and write the history of entities (clauses 5.6.11-5.6.16, 5.7.3, 5.7.4).

Entity selection reuses the context API's machinery (QuerySpec -> EntityFilter):
ids, idPattern and the type selection are matched against the types kept
with history; q, scopeQ and geo-queries are evaluated on the entities'
current state in the store (an entity deleted since matches none of them).
Before reading, a query waits for the recorder to catch up with the change
log, so a client reads history of its own writes.

Paging: entities by limit/offset (NGSILD-Results-Count with count=true);
instances per attribute are capped at `max_instances`; when a cap cuts a
response, the service returns it as partial, with the DateTime range it
covers (clause 6.3.10: 206 + Content-Range), cut at a common time so that
the next page (timerel=after or before the range end) has no gap and no repeat.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker.service.patch import utc_now
from broker.service.queries import Page, QuerySpec, split_list
from broker.store.base import Store
from broker.temporal.model import EntityRow, HistoryRow, from_us, instance_id, parse_instance_id, to_us, value_row
from broker.temporal.recorder import HistoryRecorder
from broker.temporal.storage import TIME_COLUMNS, Bucket, HistoryStorage, InstanceHit, TimeRange
from models.errors import BadRequestData, InvalidRequest, ResourceNotFound
from models.expansion import compact_instance, expand_instance
from models.normalize import TermMapper, normalize_attribute
from models.validation import check_uri
from models.vocabulary import ENTITY_CORE, PROPERTY, RELATIONSHIP

AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_VALUES_MEMBER = {PROPERTY: "values", RELATIONSHIP: "objects", "GeoProperty": "values", "LanguageProperty": "languageMaps",
                  "VocabProperty": "vocabs", "JsonProperty": "jsons", "ListProperty": "valueLists", "ListRelationship": "objectLists"}

# clause 4.5.9: these kinds give each value as an object holding it under its member name
_WRAPPED = {"LanguageProperty": "languageMap", "VocabProperty": "vocab", "JsonProperty": "json"}


def duration_us(text: str) -> int:
    """An ISO 8601 duration (clause 4.5.19.1) in microseconds; a month counts 30 days, a year 365."""
    m = _DURATION.fullmatch(text or "")
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise BadRequestData(f"aggrPeriodDuration must be an ISO 8601 duration, got {text!r}")
    y, mo, w, d, h, mi = (int(g) if g else 0 for g in m.groups()[:6])
    s = float(m.group(7) or 0)
    days = y * 365 + mo * 30 + w * 7 + d
    return int(((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000)


@dataclass(slots=True)
class TemporalQuery:
    """The temporal part of a query (clause 4.11) and how to render it."""

    timerel: str | None = None
    time_at: int | None = None
    end_time_at: int | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    mode: str = "normalized"  # normalized | temporalValues | aggregatedValues
    aggr_methods: list[str] = field(default_factory=list)
    period_us: int = 0
    sys_attrs: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "TemporalQuery":
        """Read timerel, timeAt, endTimeAt, timeproperty, lastN, options/format, aggrMethods, aggrPeriodDuration."""
        timerel = params.get("timerel") or None
        if timerel not in (None, "before", "after", "between"):
            raise BadRequestData(f"timerel must be before, after or between, got {timerel!r}")
        time_at = params.get("timeAt")
        end = params.get("endTimeAt")
        if timerel and not time_at:
            raise BadRequestData("timerel needs timeAt")
        if timerel == "between" and not end:
            raise BadRequestData("timerel=between needs endTimeAt")
        prop = params.get("timeproperty") or "observedAt"
        if prop not in TIME_COLUMNS:
            raise BadRequestData(f"timeproperty must be one of {', '.join(TIME_COLUMNS)}, got {prop!r}")
        last_n = None
        if params.get("lastN") not in (None, ""):
            try:
                last_n = int(params["lastN"])
            except (TypeError, ValueError):
                raise BadRequestData(f"lastN must be a positive integer, got {params['lastN']!r}") from None
            if last_n < 1:
                raise BadRequestData(f"lastN must be a positive integer, got {last_n}")
        options = params.get("options")
        opts = set(options if isinstance(options, list) else split_list(options))
        fmt = params.get("format")
        mode = "normalized"
        if "temporalValues" in opts or fmt in ("temporalValues", "simplified") or "simplified" in opts:
            mode = "temporalValues"
        if "aggregatedValues" in opts or fmt == "aggregatedValues":
            mode = "aggregatedValues"
        methods: list[str] = []
        period = 0
        if mode == "aggregatedValues":
            raw = params.get("aggrMethods")
            methods = raw if isinstance(raw, list) else split_list(raw)
            if not methods:
                raise BadRequestData("aggregatedValues needs aggrMethods")
            unknown = [m for m in methods if m not in AGGR_METHODS]
            if unknown:
                raise BadRequestData(f"unknown aggrMethods {unknown}: use {', '.join(AGGR_METHODS)}")
            period = duration_us(params.get("aggrPeriodDuration") or "PT0S")
        return cls(
            timerel,
            to_us(time_at, "timeAt") if timerel else None,
            to_us(end, "endTimeAt") if timerel == "between" and end else None,
            prop, last_n, mode, methods, period, "sysAttrs" in opts,
        )

    def time_range(self) -> TimeRange:
        column = TIME_COLUMNS[self.timeproperty]
        if self.timerel == "before":
            return TimeRange(column, None, self.time_at)
        if self.timerel == "after":
            return TimeRange(column, self.time_at, None)
        if self.timerel == "between":
            return TimeRange(column, self.time_at, self.end_time_at)
        return TimeRange(None)


@dataclass(slots=True)
class TemporalResult:
    """Rendered entities, and the DateTime range when the response is partial (206)."""

    entities: list[dict[str, Any]]
    total: int | None = None
    content_range: str | None = None


class TemporalService:
    """History reads and direct writes over a HistoryStorage kept up to date by a HistoryRecorder."""

    def __init__(self, store: Store, history: HistoryStorage, recorder: HistoryRecorder | None, *, max_instances: int = 1000) -> None:
        self.store = store
        self.history = history
        self.recorder = recorder
        self.max_instances = max_instances

    # ------------------------------------------------------------ reads

    async def _select(self, tenant: str, spec: QuerySpec, ctx: TermMapper) -> list[EntityRow]:
        flt = spec.to_filter(ctx)
        rows = await self.history.entities(tenant)
        if flt.ids is not None:
            wanted = set(flt.ids)
            rows = [r for r in rows if r.entity_id in wanted]
        if flt.id_pattern is not None:
            pattern = re.compile(flt.id_pattern)
            rows = [r for r in rows if pattern.search(r.entity_id)]
        if flt.type_dnf is not None:
            rows = [r for r in rows if any(conj <= set(r.types) for conj in flt.type_dnf)]
        if flt.predicate is not None and rows:
            current = await self.store.get_many(tenant, [r.entity_id for r in rows])
            rows = [r for r in rows if r.entity_id in current and flt.predicate(current[r.entity_id].doc)]
        return rows

    async def query(self, tenant: str, spec: QuerySpec, ctx: TermMapper, tq: TemporalQuery, page: Page) -> TemporalResult:
        """Query Temporal Evolution of Entities (clause 5.7.4)."""
        if spec.is_empty() and not spec.local:
            raise BadRequestData("a temporal query needs at least one of id, idPattern, type, attrs, q or a geo-query")
        if self.recorder is not None:
            await self.recorder.catch_up()
        rows = await self._select(tenant, spec, ctx)
        attrs = [ctx.expand_term(a) for a in spec.attrs] if spec.attrs else None
        chosen = rows[page.offset : page.offset + page.limit]
        result = await self._render(tenant, chosen, attrs, ctx, tq)
        if attrs is not None:  # entities with none of the attributes in the range are not part of the answer
            result.entities = [e for e in result.entities if len(e) > 2]
        result.total = len(rows) if page.count else None
        return result

    async def retrieve(self, tenant: str, entity_id: str, attrs: list[str] | None, ctx: TermMapper, tq: TemporalQuery) -> TemporalResult:
        """Retrieve Temporal Evolution of an Entity (clause 5.7.3)."""
        check_uri(entity_id, "entity id")
        if self.recorder is not None:
            await self.recorder.catch_up()
        rows = [r for r in await self.history.entities(tenant) if r.entity_id == entity_id]
        if not rows:
            raise ResourceNotFound(f"no temporal entity {entity_id}")
        expanded = [ctx.expand_term(a) for a in attrs] if attrs else None
        return await self._render(tenant, rows, expanded, ctx, tq)

    async def _render(self, tenant: str, rows: list[EntityRow], attrs: list[str] | None, ctx: TermMapper, tq: TemporalQuery) -> TemporalResult:
        out = {r.entity_id: _head(r, ctx) for r in rows}
        if not rows:
            return TemporalResult([])
        ids = [r.entity_id for r in rows]
        rng = tq.time_range()
        if tq.mode == "aggregatedValues":
            origin = rng.start if rng.start is not None else 0
            buckets = await self.history.aggregate(tenant, ids, attrs, rng, origin, tq.period_us)
            for b in buckets:
                attr = out[b.entity_id].setdefault(ctx.compact_iri(b.attr), {"type": PROPERTY})
                start, end = _period(b, origin, tq, rng)
                for method in tq.aggr_methods:
                    attr.setdefault(method, []).append([_aggregate(b, method), start, end])
            return TemporalResult(list(out.values()))
        cap = self.max_instances
        newest = tq.last_n is not None
        want = min(tq.last_n, cap) if tq.last_n is not None else cap
        truncating = tq.last_n is None or tq.last_n > cap
        hits = await self.history.instances(tenant, ids, attrs, rng, want + 1 if truncating else want, newest)
        groups: dict[tuple[str, str], list[InstanceHit]] = {}
        for h in hits:
            groups.setdefault((h.entity_id, h.attr), []).append(h)
        cut: int | None = None
        for group in groups.values():
            if truncating and len(group) > want:
                edge = group[0].time_us if newest else group[-1].time_us
                cut = edge if cut is None else (max(cut, edge) if newest else min(cut, edge))
        if cut is not None:
            hits = [h for h in hits if (h.time_us > cut if newest else h.time_us < cut)]
        for h in hits:
            inst = orjson.loads(h.instance)
            inst["instanceId"] = instance_id(h.iid)
            entity = out[h.entity_id]
            key = ctx.compact_iri(h.attr)
            if tq.mode == "temporalValues":
                _add_value(entity, key, inst, h.time_us, tq, ctx)
            else:
                shown = compact_instance(inst, ctx, sys_attrs=tq.sys_attrs)
                shown["instanceId"] = inst["instanceId"]
                if "deletedAt" in inst:
                    shown["deletedAt"] = inst["deletedAt"]
                entity.setdefault(key, []).append(shown)
        if tq.mode == "temporalValues":
            for entity in out.values():
                _single_slots_as_objects(entity)
        result = TemporalResult(list(out.values()))
        if cut is not None:
            times = [h.time_us for h in hits]
            if newest:
                # Backwards (lastN): range-end is the least recent time in the response
                # (clause 6.3.10). The page holds only instances newer than the cut, so
                # the next page, timerel=before (exclusive) that time, starts with the
                # cut's own instances: no gap, no repeat.
                start = {"before": tq.time_at, "between": tq.end_time_at}.get(tq.timerel or "") or (max(times) if times else cut)
                end = min(times) if times else cut
                result.content_range = f"DateTime {from_us(start)}-{from_us(end)}/{tq.last_n}"
            else:
                start = tq.time_at if tq.timerel in ("after", "between") else (min(times) if times else cut)
                result.content_range = f"DateTime {from_us(start or cut)}-{from_us(cut)}/*"
        return result

    # ------------------------------------------------------------ writes

    async def write(self, tenant: str, body: Any, ctx: TermMapper, *, entity_id: str | None = None) -> bool:
        """Create or Update Temporal Representation (5.6.11) or Add Attributes (5.6.12); whether the entity is new."""
        if not isinstance(body, dict):
            raise BadRequestData("a temporal entity must be a JSON object")
        eid = entity_id or body.get("id")
        check_uri(eid, "entity id")
        known = {r.entity_id: r for r in await self.history.entities(tenant)}
        if entity_id is not None and eid not in known:
            raise ResourceNotFound(f"no temporal entity {eid}")
        types_raw = body.get("type", [])
        if entity_id is None and not types_raw:
            raise BadRequestData("a temporal entity needs a type")
        types = [ctx.expand_term(t) for t in (types_raw if isinstance(types_raw, list) else [types_raw])]
        now_us = to_us(utc_now())
        rows: list[HistoryRow] = []
        for name, value in body.items():
            if name in ENTITY_CORE:
                continue
            instances = value if isinstance(value, list) else [value]
            for raw in instances:
                inst = expand_instance(normalize_attribute(name, raw), ctx)
                stamp = utc_now()
                inst.setdefault("createdAt", stamp)
                inst.setdefault("modifiedAt", stamp)
                rows.append(value_row(tenant, eid, ctx.expand_term(name), inst, now_us))
        old = known.get(eid)
        entity = EntityRow(tenant, eid, types or (old.types if old else []), None)
        await self.history.write([entity], rows)
        return old is None

    async def delete_entity(self, tenant: str, entity_id: str) -> None:
        """Delete Temporal Representation of an Entity (5.6.16)."""
        check_uri(entity_id, "entity id")
        if not await self.history.delete_entity(tenant, entity_id):
            raise ResourceNotFound(f"no temporal entity {entity_id}")

    async def delete_attr(self, tenant: str, entity_id: str, attr: str, ctx: TermMapper, dataset_id: str | None, delete_all: bool) -> None:
        """Delete Attribute from Temporal Representation (5.6.13): the default instance, a datasetId, or all."""
        check_uri(entity_id, "entity id")
        target = None if delete_all else (dataset_id or "")
        if not await self.history.delete_attr(tenant, entity_id, ctx.expand_term(attr), target):
            raise ResourceNotFound(f"no temporal attribute {attr} on {entity_id}")

    async def patch_instance(self, tenant: str, entity_id: str, attr: str, iid_text: str, body: Any, ctx: TermMapper) -> None:
        """Modify Attribute instance in Temporal Representation (5.6.14)."""
        check_uri(entity_id, "entity id")
        iid = parse_instance_id(iid_text)
        name = ctx.expand_term(attr)
        stored = None if iid is None else await self.history.get_instance(tenant, entity_id, name, iid)
        if iid is None or stored is None:
            raise ResourceNotFound(f"no instance {iid_text} of {attr} on {entity_id}")
        if not isinstance(body, dict):
            raise BadRequestData("an attribute instance must be a JSON object")
        current = orjson.loads(stored)
        fragment = expand_instance(normalize_attribute(attr, {"type": current.get("type", PROPERTY), **body}), ctx)
        merged = {**current, **fragment, "modifiedAt": utc_now()}
        if merged.get("datasetId", "") != current.get("datasetId", ""):
            raise InvalidRequest("the datasetId of an instance cannot change")
        row = value_row(tenant, entity_id, name, merged, to_us(merged["modifiedAt"]))
        await self.history.replace_instance(tenant, entity_id, name, iid, row)


def _head(row: EntityRow, ctx: TermMapper) -> dict[str, Any]:
    types = [ctx.compact_iri(t) for t in row.types]
    return {"id": row.entity_id, "type": types[0] if len(types) == 1 else types}


def _add_value(entity: dict[str, Any], key: str, inst: dict[str, Any], time_us: int, tq: TemporalQuery, ctx: TermMapper) -> None:
    kind = inst.get("type", PROPERTY)
    member = _VALUES_MEMBER.get(kind, "values")
    value = next((inst[m] for m in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList") if m in inst), None)
    if kind == "VocabProperty":  # vocab values are IRIs, shown in the request's terms as elsewhere
        value = [ctx.compact_iri(v) for v in value] if isinstance(value, list) else ctx.compact_iri(value)
    if kind in _WRAPPED:
        value = {_WRAPPED[kind]: value}
    stamp = inst.get(tq.timeproperty) if tq.timerel else (inst.get("observedAt") or inst.get("modifiedAt"))
    slots = entity.setdefault(key, [])
    ds = inst.get("datasetId")
    slot = next((s for s in slots if s.get("datasetId") == ds), None)
    if slot is None:
        slot = {"type": kind, member: []}
        if ds:
            slot["datasetId"] = ds
        slots.append(slot)
    slot[member].append([value, stamp or from_us(time_us)])


def _single_slots_as_objects(entity: dict[str, Any]) -> None:
    """An attribute with one instance series is an object (clause 4.5.9); several datasetIds stay an array of them."""
    for key, slots in entity.items():
        if key not in ("id", "type") and isinstance(slots, list) and len(slots) == 1:
            entity[key] = slots[0]


def _period(b: Bucket, origin: int, tq: TemporalQuery, rng: TimeRange) -> tuple[str | None, str | None]:
    if tq.period_us <= 0:
        return (from_us(rng.start) if rng.start is not None else None, from_us(rng.end) if rng.end is not None else None)
    start = origin + b.index * tq.period_us
    end = start + tq.period_us
    if rng.end is not None:
        end = min(end, rng.end)
    return from_us(start), from_us(end)


def _aggregate(b: Bucket, method: str) -> Any:
    if method == "totalCount":
        return b.total
    if method == "distinctCount":
        return b.distinct
    if b.numeric == 0:
        return None
    if method == "sum":
        return b.sum
    if method == "avg":
        return (b.sum or 0.0) / b.numeric
    if method == "min":
        return b.min
    if method == "max":
        return b.max
    if method == "sumsq":
        return b.sumsq
    # stddev: the sample standard deviation, as PostgreSQL's stddev()
    if b.numeric < 2:
        return 0.0
    mean = (b.sum or 0.0) / b.numeric
    variance = max(((b.sumsq or 0.0) - b.numeric * mean * mean) / (b.numeric - 1), 0.0)
    return math.sqrt(variance)
