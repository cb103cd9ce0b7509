"""Temporal representations of entities (clauses 4.5.6-4.5.9, 4.5.19) and the partial-content cut (clause 6.3.10).

    normalized        every instance of an attribute, in time order, with its instanceId
    temporalValues    [value, time] pairs per attribute and datasetId ("values", "objects", ...)
    aggregatedValues  [aggregate, period start, period end] per method

`cut` keeps a response within the broker's instance budget: it takes the
oldest instances (or, with lastN, the newest) over every entity and
attribute of the response together and stops at a time where the next page
can start, so that `content_range` can describe the page as clause 6.3.10
asks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from broker.temporal.model import LAST_DAY, EntityRow, day_text, from_us
from broker.temporal.query import TemporalQuery
from broker.temporal.storage import Bucket, InstanceHit, TimeRange
from models.normalize import TermMapper
from models.vocabulary import PROPERTY, RELATIONSHIP

_VALUES_MEMBER = {PROPERTY: "values", RELATIONSHIP: "objects", "GeoProperty": "values", "LanguageProperty": "languageMaps",
                  "VocabProperty": "vocabs", "JsonProperty": "jsons", "ListProperty": "valueLists", "ListRelationship": "objectLists"}

# clause 4.5.9: these kinds give each value as an object holding it under its member name
_WRAPPED = {"LanguageProperty": "languageMap", "VocabProperty": "vocab", "JsonProperty": "json"}


def head(row: EntityRow, ctx: TermMapper) -> dict[str, Any]:
    """id and type of a temporal entity, in the reader's terms."""
    types = [ctx.compact_iri(t) for t in row.types]
    return {"id": row.entity_id, "type": types[0] if len(types) == 1 else types}


def add_value(entity: dict[str, Any], key: str, inst: dict[str, Any], time_us: int, tq: TemporalQuery, ctx: TermMapper) -> None:
    """Append one instance to the simplified temporal representation (clause 4.5.9) of its attribute."""
    kind = inst.get("type", PROPERTY)
    member = _VALUES_MEMBER.get(kind, "values")
    value = next((inst[m] for m in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList") if m in inst), None)
    if kind == "VocabProperty" and value is not None:  # vocab values are IRIs, in the request's terms as elsewhere
        value = [ctx.compact_iri(v) for v in value] if isinstance(value, list) else ctx.compact_iri(str(value))
    if kind in _WRAPPED:
        value = {_WRAPPED[kind]: value}
    stamp = inst.get(tq.timeproperty) if tq.timerel or tq.timeproperty_given else (inst.get("observedAt") or inst.get("modifiedAt"))
    slots = entity.setdefault(key, [])
    ds = inst.get("datasetId")
    slot = next((s for s in slots if s.get("datasetId") == ds), None)
    if slot is None:
        slot = {"type": kind, member: []}
        if ds:
            slot["datasetId"] = ds
        slots.append(slot)
    slot[member].append([value, stamp or from_us(time_us)])


def empty_values(inst: dict[str, Any]) -> dict[str, Any]:
    """The simplified temporal representation of an attribute of this instance's kind, with no value on this page."""
    kind = inst.get("type", PROPERTY)
    return {"type": kind, _VALUES_MEMBER.get(kind, "values"): []}


def single_slots_as_objects(entity: dict[str, Any]) -> None:
    """An attribute with one instance series is an object (clause 4.5.9); several datasetIds stay an array of them."""
    for key, slots in entity.items():
        if key not in ("id", "type") and isinstance(slots, list) and len(slots) == 1:
            entity[key] = slots[0]


def stamp(value: int) -> str:
    """A computed DateTime (a period bound): whole seconds without a fraction, else as `from_us`.

    From 1970 to 9999 the text of its day is cached and the time of day formatted: two bounds per bucket
    through datetime and strftime were most of rendering a month of hourly buckets (query18).
    """
    if value % 1_000_000:
        return from_us(value)
    day, second = divmod(value // 1_000_000, 86_400)
    if 0 <= day < LAST_DAY:
        return day_text(day) + _clock(second)
    return datetime.fromtimestamp(value // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=86_400)
def _clock(second: int) -> str:
    """'THH:MM:SSZ' of a second of the day."""
    hour, second = divmod(second, 3_600)
    return f"T{hour:02d}:{second // 60:02d}:{second % 60:02d}Z"


def period(b: Bucket, origin: int, tq: TemporalQuery, rng: TimeRange,
           memo: dict[int, str] | None = None) -> tuple[str | None, str | None]:
    """Start and end of the period of a bucket; with no period, the range of the query.

    `memo` keeps the bounds already written in one answer: a period's end is the next one's start.
    """
    if tq.period_us <= 0:
        return (stamp(rng.start) if rng.start is not None else None, stamp(rng.end) if rng.end is not None else None)
    start = origin + b.period_no * tq.period_us
    end = start + tq.period_us
    if rng.end is not None:
        end = min(end, rng.end)
    if memo is None:
        return stamp(start), stamp(end)
    first = memo.get(start)
    if first is None:
        first = memo[start] = stamp(start)
    last = memo.get(end)
    if last is None:
        last = memo[end] = stamp(end)
    return first, last


def aggregate(b: Bucket, method: str) -> Any:
    """The value of one aggregation method over a bucket (clause 4.5.19.1)."""
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


def project(entity: dict[str, Any], tq: TemporalQuery, ctx: TermMapper) -> dict[str, Any]:
    """The rendered entity reduced by pick or omit (clause 4.21), member names in the reader's terms."""
    if tq.pick is None and tq.omit is None:
        return entity

    def key(name: str) -> str:
        return name if name in ("id", "type", "scope") else ctx.compact_iri(ctx.expand_term(name))

    if tq.pick is not None:
        keep = {key(n) for n in tq.pick.names()}
        return {k: v for k, v in entity.items() if k in keep}
    assert tq.omit is not None
    drop = {key(n) for n in tq.omit.names()}
    return {k: v for k, v in entity.items() if k not in drop}


def cut(hits: Sequence[InstanceHit], budget: int, newest: bool) -> tuple[list[InstanceHit], bool]:
    """At most `budget` instances (of `budget` + 1 fetched), ending before the time the budget ran out at.

    Every instance strictly before (with lastN: after) the time of the first
    instance left out is kept, so that instances sharing a time are never
    split between pages; when they alone exceed the budget they are all kept.
    """
    if len(hits) <= budget:
        return list(hits), False
    ordered = sorted(hits, key=lambda h: (h.time_us, h.iid), reverse=newest)
    edge = ordered[budget].time_us
    kept = [h for h in hits if (h.time_us > edge if newest else h.time_us < edge)]
    if not kept:
        kept = [h for h in hits if h.time_us == edge]
    return kept, True


def content_range(tq: TemporalQuery, times: Sequence[int]) -> str:
    """The Content-Range of a partial temporal response (clause 6.3.10), `times` those of its instances."""
    least, most = min(times), max(times)
    if tq.last_n is not None:  # backwards, from the most recent
        start = {"before": tq.time_at, "between": tq.end_time_at}.get(tq.timerel or "") or most
        return f"DateTime {from_us(start)}-{from_us(least)}/{tq.last_n}"
    start = tq.time_at if tq.timerel in ("after", "between") and tq.time_at is not None else least
    return f"DateTime {from_us(start)}-{from_us(most)}/*"
