"""Reading QuantumLeap-style time series out of the broker's temporal history.

QuantumLeap keeps one table row per entity notification: a time index and
every attribute's value at it. The broker keeps one row per attribute
instance. `load_rows` rebuilds QuantumLeap's rows: per entity, the union of
the instance times of the wanted attributes, each attribute's value at that
time (None where it has no instance then). `lastN`, `limit` and `offset`
then apply to those rows over all the selected entities together, ordered by
time, as QuantumLeap's SQL does (ORDER BY time_index ... LIMIT ... OFFSET).

Aggregation (`aggrMethod` count|sum|avg|min|max, `aggrPeriod` year...second)
is computed here over the rows in [fromDate, toDate]: calendar periods
(months, years) are not fixed durations, so they are truncated as
date_trunc would, in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson

from broker.temporal.model import from_us, to_us
from broker.temporal.storage import HistoryStorage, TimeRange
from models.errors import BadRequestData

AGGR_METHODS = ("count", "sum", "avg", "min", "max")
AGGR_PERIODS = ("year", "month", "day", "hour", "minute", "second")
DEFAULT_LIMIT = 10_000
_VALUE_MEMBERS = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")


class QLError(Exception):
    """An error answered the QuantumLeap way: {"error": ..., "description": ...} with a status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def not_found() -> QLError:
    return QLError(404, "Not Found", "No records were found for such query.")


def bad(description: str, error: str = "Bad parameters use") -> QLError:
    return QLError(400, error, description)


def iso(us: int) -> str:
    """A time index as QuantumLeap prints it: 2026-01-01T00:00:00.000+00:00."""
    text = from_us(us)
    return text[:-1] + "+00:00" if text.endswith("Z") else text


@dataclass(slots=True)
class Params:
    """The query parameters common to every QuantumLeap query endpoint, validated."""

    from_us: int | None = None
    to_us: int | None = None
    from_text: str | None = None
    to_text: str | None = None
    last_n: int | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    aggr_method: str | None = None
    aggr_period: str | None = None
    aggr_scope: str = "entity"
    geo: tuple[str, str, str] | None = None

    @classmethod
    def parse(cls, q: Any) -> "Params":
        p = cls()
        for name in ("fromDate", "toDate"):
            text = q.get(name)
            if text:
                try:
                    value = to_us(text, name)
                except BadRequestData:
                    raise bad(f"{name} must be an ISO 8601 date-time, got {text!r}", "InvalidParameterValue") from None
                if name == "fromDate":
                    p.from_us, p.from_text = value, text
                else:
                    p.to_us, p.to_text = value, text
        p.last_n = _int(q, "lastN", None, 1)
        p.limit = _int(q, "limit", DEFAULT_LIMIT, 1) or DEFAULT_LIMIT
        p.offset = _int(q, "offset", 0, 0) or 0
        method = q.get("aggrMethod") or None
        period = q.get("aggrPeriod") or None
        if method is not None and method not in AGGR_METHODS:
            raise bad(f"aggrMethod must be one of {', '.join(AGGR_METHODS)}, got {method!r}")
        if period is not None and period not in AGGR_PERIODS:
            raise bad(f"aggrPeriod must be one of {', '.join(AGGR_PERIODS)}, got {period!r}")
        if period and not method:
            raise bad("aggrMethod is compulsory when using aggrPeriod.")
        scope = q.get("aggrScope") or "entity"
        if scope not in ("entity", "global"):
            raise bad(f"aggrScope must be entity or global, got {scope!r}")
        p.aggr_method, p.aggr_period, p.aggr_scope = method, period, scope
        options = [o.strip() for o in (q.get("options") or "").split(",") if o.strip()]
        unknown = [o for o in options if o not in ("keyValues", "values")]
        if unknown:  # QuantumLeap answers 501 to any option; keyValues/values change nothing in these shapes
            raise bad(f"unsupported options {unknown}: only keyValues and values are accepted")
        georel, geometry, coords = q.get("georel"), q.get("geometry"), q.get("coords")
        if georel or geometry or coords:
            if not (georel and geometry and coords):
                raise QLError(400, "ValueError", "Invalid geographical query parameters")
            p.geo = (georel, geometry, coords)
        return p

    def time_range(self) -> TimeRange:
        end = self.to_us + 1 if self.to_us is not None else None  # toDate is inclusive in QuantumLeap
        return TimeRange(None, self.from_us, end)


def _int(q: Any, name: str, default: int | None, minimum: int) -> int | None:
    text = q.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise bad(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(slots=True)
class Series:
    """One entity's rows: its id and type (as shown), time indexes and attribute columns."""

    entity_id: str
    entity_type: str
    index: list[int] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)


def _value(inst: dict[str, Any]) -> Any:
    return next((inst[m] for m in _VALUE_MEMBERS if m in inst), None)


async def load_rows(
    history: HistoryStorage, tenant: str, entities: list[tuple[str, str, str]],
    attr_names: Callable[[str], str | None], p: Params, *, aggregate: bool = False,
) -> list[Series]:
    """The rows of the given entities (stored id, shown id, shown type), paged by lastN/limit/offset.

    `attr_names` maps a stored attribute IRI to the name to show, or None to leave it out.
    With `aggregate`, every row in the time range is read (paging does not apply before aggregating).
    """
    if not entities:
        return []
    stored_ids = [e[0] for e in entities]
    newest = p.last_n is not None and not aggregate
    if aggregate:
        per_attr = 10**9
    elif p.last_n is not None:
        per_attr = p.offset + min(p.last_n, p.limit)
    else:
        per_attr = p.offset + p.limit
    hits = await history.instances(tenant, stored_ids, None, p.time_range(), per_attr, newest)
    table: dict[tuple[str, int], dict[str, Any]] = {}
    names_seen: dict[str, set[str]] = {}
    for h in hits:
        name = attr_names(h.attr)
        if name is None:
            continue
        inst = orjson.loads(h.instance)
        if "deletedAt" in inst:
            continue
        table.setdefault((h.entity_id, h.time_us), {})[name] = _value(inst)
        names_seen.setdefault(h.entity_id, set()).add(name)
    keys = sorted(table, key=lambda k: (k[1], k[0]))
    if not aggregate:
        if p.last_n is not None:
            keys = list(reversed(keys))[p.offset : p.offset + min(p.last_n, p.limit)]
            keys.reverse()
        else:
            keys = keys[p.offset : p.offset + p.limit]
    shown = {e[0]: e for e in entities}
    out: dict[str, Series] = {}
    for eid, t in keys:
        _, show_id, show_type = shown[eid]
        s = out.get(eid)
        if s is None:
            s = out[eid] = Series(show_id, show_type, [], {n: [] for n in sorted(names_seen[eid])})
        s.index.append(t)
        row = table[(eid, t)]
        for n, col in s.columns.items():
            col.append(row.get(n))
    return [out[e[0]] for e in entities if e[0] in out]


def truncate(us: int, period: str) -> int:
    """The start (µs) of the calendar period holding `us`, in UTC."""
    moment = datetime.fromtimestamp(us // 1_000_000, timezone.utc)
    parts = {"year": dict(month=1, day=1, hour=0, minute=0, second=0), "month": dict(day=1, hour=0, minute=0, second=0),
             "day": dict(hour=0, minute=0, second=0), "hour": dict(minute=0, second=0), "minute": dict(second=0), "second": {}}
    start = moment.replace(**parts[period])  # type: ignore[arg-type]
    return int(start.timestamp()) * 1_000_000


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate_values(values: list[Any], method: str) -> Any:
    """One aggregate of a column (None values skipped, as SQL does); QLError when it cannot apply."""
    present = [v for v in values if v is not None]
    if method == "count":
        return len(present)
    if any(not _is_number(v) for v in present):
        raise QLError(404, "AggrMethod cannot be applied", "AggrMethod cannot be applied on type TEXT and BOOLEAN.")
    if not present:
        return None
    if method == "sum":
        return sum(present)
    if method == "avg":
        return sum(present) / len(present)
    return min(present) if method == "min" else max(present)


def aggregate_series(index: list[int], column: list[Any], p: Params) -> tuple[list[str], list[Any]]:
    """(index, values) of one column aggregated by `p.aggr_period` (or over the whole range: no index)."""
    assert p.aggr_method is not None
    if not p.aggr_period:
        return [], [aggregate_values(column, p.aggr_method)]
    buckets: dict[int, list[Any]] = {}
    for t, v in zip(index, column):
        buckets.setdefault(truncate(t, p.aggr_period), []).append(v)
    starts = sorted(buckets)
    return [iso(s) for s in starts], [aggregate_values(buckets[s], p.aggr_method) for s in starts]


def merge_global(series: list[Series]) -> Series:
    """All the entities' rows as one series (aggrScope=global)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    names: set[str] = set()
    for s in series:
        names.update(s.columns)
        for i, t in enumerate(s.index):
            rows.append((t, {n: c[i] for n, c in s.columns.items()}))
    rows.sort(key=lambda r: r[0])
    merged = Series("", series[0].entity_type if series else "", [r[0] for r in rows], {})
    for n in sorted(names):
        merged.columns[n] = [r[1].get(n) for r in rows]
    return merged
