"""QuantumLeap's rows rebuilt from the broker's history, paged and aggregated as its SQL does.

QuantumLeap keeps one table per entity type, one row per notified entity: a
time index and every attribute's value at it. The history here keeps one
row per attribute instance. `load_rows` rebuilds QuantumLeap's rows for the
entities of one type: per entity, the union of the instance times of the
wanted attributes (of every attribute when none is named), each attribute's
value at that time (None where it has no instance then).

Then, per type as QuantumLeap runs one statement per table
(src/translators/sql_translator.py:1098-1110):

- raw rows: ORDER BY time_index (DESC with lastN) LIMIT min(lastN, limit)
  OFFSET offset over all the type's entities together (:878-910, 1106);
- aggregated with aggrPeriod: one row per entity and DATE_TRUNC(period)
  bucket, ORDER BY entity_type, entity_id, time_index (DESC with lastN),
  then the same LIMIT/OFFSET over the buckets (:750-775, 886-906);
- aggregated without aggrPeriod: one row per entity (GROUP BY entity),
  LIMIT/OFFSET over the entities;
- lastN answers are given back oldest first (:1452-1454).

Aggregates follow PostgreSQL on QuantumLeap's column types: count counts
non-null values of any type; sum/avg need numbers; min/max take numbers,
text and date-times; anything else is "AggrMethod cannot be applied" (404,
PostgresErrorAnalyzer.is_aggregation_error).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from broker.quantumleap.errors import cannot_aggregate
from broker.quantumleap.params import Params
from broker.temporal.model import LAST_DAY, day_text, from_us, to_us
from broker.temporal.rollup import DAY_US, HOUR_US, UNITS, RollupBucket
from broker.temporal.storage import HistoryStorage
from models.errors import BadRequestData


class Pick(NamedTuple):
    """An entity chosen by a query: its history id, and its id and type as shown."""

    stored_id: str
    shown_id: str
    shown_type: str


@dataclass(slots=True)
class Series:
    """One entity's rows: id and type as shown, time indexes (QuantumLeap ISO text) and attribute columns."""

    entity_id: str
    entity_type: str
    index: list[str] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    rolled: Buckets | None = None  # its aggregation, already done from the hourly rollups (load_buckets)


def iso(us: int) -> str:
    """A time as QuantumLeap prints it (timescale.py:305-310): UTC, milliseconds, '+00:00'."""
    text = from_us(us)
    if len(text) > 24:  # microseconds: QuantumLeap keeps milliseconds
        text = text[:23] + "Z"
    return text[:-1] + "+00:00"


def ql_value(value: Any) -> Any:
    """A stored value as QuantumLeap gives it back: an NGSI-LD DateTime as its ISO text (timescale.py:231-241)."""
    if isinstance(value, dict) and value.get("@type") == "DateTime" and isinstance(value.get("@value"), str):
        try:
            return iso(to_us(value["@value"]))
        except BadRequestData:
            return value["@value"]
    return value


async def load_rows(history: HistoryStorage, tenant: str, picks: Sequence[Pick], show: Callable[[str], str | None],
                    p: Params) -> list[Series]:
    """The rows of the entities of one type, paged as QuantumLeap pages raw rows (aggregation reads all of them).

    `show` maps a stored attribute IRI to the name to show, or None to leave it out.
    """
    if not picks:
        return []
    aggregate = p.aggr_method is not None
    if aggregate:
        per_attr, newest = 10**9, False
    else:  # the first (or last) offset + window rows overall are among each attribute's first offset + window
        per_attr, newest = p.offset + p.window, p.last_n is not None
    hits = await history.instances(tenant, [k.stored_id for k in picks], None, p.time_range(), per_attr, newest)
    table: dict[tuple[str, int], dict[str, Any]] = {}
    names_seen: dict[str, set[str]] = {}
    for h in hits:
        name = show(h.attr)
        if name is None:
            continue
        deleted, value = h.value()  # from the columns: no document rebuilt and parsed again
        if deleted:
            continue
        table.setdefault((h.entity_id, h.time_us), {})[name] = ql_value(value)
        names_seen.setdefault(h.entity_id, set()).add(name)
    keys = sorted(table, key=lambda k: (k[1], k[0]))
    if not aggregate:
        if p.last_n is not None:
            keys = keys[::-1][p.offset : p.offset + p.window][::-1]
        else:
            keys = keys[p.offset : p.offset + p.window]
    by_id = {k.stored_id: k for k in picks}
    out: dict[str, Series] = {}
    for eid, t in keys:
        s = out.get(eid)
        if s is None:
            pick = by_id[eid]
            s = out[eid] = Series(pick.shown_id, pick.shown_type, [], {n: [] for n in sorted(names_seen[eid])})
        s.index.append(iso(t))
        row = table[(eid, t)]
        for n, col in s.columns.items():
            col.append(row.get(n))
    return sorted(out.values(), key=lambda s: s.entity_id)  # sql_translator.py:1509: entities by id


_EXACT = 2**53  # integers a double holds exactly


def _rolled_value(b: RollupBucket, method: str) -> Any:
    """aggregate_values over a bucket of JSON numbers, all integers or all not."""
    if method == "count":
        return b.n
    ints = b.n_int == b.n
    if method == "sum":
        return int(b.sum or 0) if ints else b.sum
    if method == "avg":
        return (int(b.sum or 0) if ints else (b.sum or 0.0)) / b.n
    value = b.min if method == "min" else b.max
    return int(value) if ints and value is not None else value


def _servable(b: RollupBucket, method: str) -> bool:
    """Whether the Python aggregation of this bucket's values is known from its rollup alone.

    Only default-dataset instances (one value per entity and time, as QuantumLeap's rows), all JSON
    numbers. A sum of integers is an integer (exact within a double's range); with a float among
    them Python adds as floats, like the rollup. min and max give back the value itself, an int or
    a float: known only when the bucket's numbers are all integers or all not.
    """
    if b.n_ds or b.n_pure != b.n or b.n == 0:
        return False
    if b.n_int == 0 or method == "count":
        return True
    if b.n_int < b.n:
        return method in ("sum", "avg")
    return all(v is None or abs(v) < _EXACT for v in (b.sum, b.min, b.max))


async def load_buckets(history: HistoryStorage, tenant: str, picks: Sequence[Pick], show: Callable[[str], str | None],
                       p: Params) -> list[Series] | None:
    """The aggregated series of the entities of one type from the hourly rollups, None when they cannot serve.

    Serves per-entity aggregation by hour, day, month, year or over the whole range
    when every value aggregated is a JSON number (see _servable); what `aggregate`
    would compute from `load_rows`, without reading the instances. Only the entities
    that the page (offset, limit, lastN) reaches are given, in the order page_buckets keeps.
    """
    if not picks or p.aggr_method is None or p.aggr_scope != "entity" or p.aggr_period not in (None, *UNITS):
        return None
    # page_buckets keeps the first offset + window (entity, bucket) rows, entity by entity in the
    # order of their shown ids: read the rollups a chunk of entities at a time until those are had
    ordered = sorted(picks, key=lambda k: (k.shown_id, k.stored_id))
    wanted = p.offset + p.window
    out: list[Series] = []
    rows, done, chunk = 0, 0, 16
    while done < len(ordered) and rows < wanted:
        part = ordered[done : done + chunk]
        done += len(part)
        chunk *= 2
        series = await _rolled_series(history, tenant, part, show, p)
        if series is None:
            return None
        out.extend(series)
        rows += sum(len(s.rolled.starts) for s in series if s.rolled is not None)
    if done < len(ordered) and p.aggr_method != "count":
        # an entity past the page whose values cannot be aggregated still makes the answer a 404
        impure = await history.impure_attrs(tenant, [k.stored_id for k in ordered[done:]], p.time_range())
        if any(show(attr) is not None for attr in impure):
            return None  # (maybe only in a partial hour outside the range: the Python path then decides)
    return out


async def _rolled_series(history: HistoryStorage, tenant: str, picks: Sequence[Pick], show: Callable[[str], str | None],
                         p: Params) -> list[Series] | None:
    """load_buckets for some entities, all of their buckets."""
    assert p.aggr_method is not None
    rolled = await history.rollup(tenant, [k.stored_id for k in picks], None, p.time_range(), unit=p.aggr_period)
    if rolled is None:
        return None
    by_entity: dict[str, dict[str, dict[int, RollupBucket]]] = {}
    iris: dict[tuple[str, str], str] = {}
    for b in rolled:
        name = show(b.attr)
        if name is None:
            continue
        if not _servable(b, p.aggr_method) or iris.setdefault((b.entity_id, name), b.attr) != b.attr:
            return None  # text, booleans, datasets, mixed numbers; or two attributes shown under one name
        by_entity.setdefault(b.entity_id, {}).setdefault(name, {})[b.period_no] = b
    out: list[Series] = []
    for pick in picks:
        columns = by_entity.get(pick.stored_id)
        if not columns:
            continue
        indexes = sorted({i for col in columns.values() for i in col})
        starts = [_start(i) if p.aggr_period else "" for i in indexes]
        values = {n: [_rolled_value(col[i], p.aggr_method) if i in col else (0 if p.aggr_method == "count" else None)
                      for i in indexes] for n, col in sorted(columns.items())}
        series = Series(pick.shown_id, pick.shown_type, starts, {n: [] for n in values})
        series.rolled = Buckets(series, starts, values)
        out.append(series)
    return out


def _start(us: int) -> str:
    """A bucket start as `truncate` gives it: a whole hour from its day's text (a month of hourly buckets
    formatted 744 datetimes, a third of a one-entity hourly answer's CPU: query18's profile)."""
    day, rest = divmod(us, DAY_US)
    if rest % HOUR_US == 0 and 0 <= day < LAST_DAY:
        return f"{day_text(day)}T{rest // HOUR_US:02d}:00:00.000+00:00"
    return datetime.fromtimestamp(us // 1_000_000, UTC).isoformat(timespec="milliseconds")


_PREFIX = {"year": 4, "month": 7, "day": 10, "hour": 13, "minute": 16, "second": 19}
_FLOOR = "0001-01-01T00:00:00.000+00:00"  # what pads a kept prefix back to an `iso` text


def truncate(text: str, period: str) -> str:
    """DATE_TRUNC(period, t) in UTC, as QuantumLeap ISO text.

    An `iso` text (fixed width) is truncated once per kept prefix (cached): the Python aggregation
    path truncates every instance's time, most of them in a bucket already seen.
    """
    if len(text) == 29 and text[4] == "-" and text[10] == "T" and text.endswith("+00:00"):
        return _truncated(text[: _PREFIX[period]], period)
    return _truncate(text, period)


@functools.lru_cache(maxsize=65536)
def _truncated(prefix: str, period: str) -> str:
    return _truncate(prefix + _FLOOR[len(prefix):], period)


def _truncate(text: str, period: str) -> str:
    moment = datetime.fromisoformat(text)
    keep = {"year": 1, "month": 2, "day": 3, "hour": 4, "minute": 5, "second": 6}[period]
    parts = [moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second]
    y, mo, d, h, mi, sec = parts[:keep] + [1, 1, 1, 0, 0, 0][keep:]
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC).isoformat(timespec="milliseconds")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate_values(values: list[Any], method: str) -> Any:
    """One aggregate of a column, None values skipped as SQL does; QLError 404 when the type has none."""
    present = [v for v in values if v is not None]
    if method == "count":
        return len(present)
    numbers = all(_is_number(v) for v in present)
    if method in ("sum", "avg"):
        if not numbers:
            raise cannot_aggregate()
        if not present:
            return None
        return sum(present) if method == "sum" else sum(present) / len(present)
    if not (numbers or all(isinstance(v, str) for v in present)):
        raise cannot_aggregate()  # booleans, JSON and geometries have no min/max in PostgreSQL
    if not present:
        return None
    return min(present) if method == "min" else max(present)


@dataclass(slots=True)
class Buckets:
    """The aggregated rows of one entity (or of all, aggrScope=global): bucket starts and per-attribute values."""

    series: Series
    starts: list[str]
    values: dict[str, list[Any]]


def aggregate(series: Series, p: Params) -> Buckets:
    """Every bucket of one series (one bucket, start '', without aggrPeriod)."""
    assert p.aggr_method is not None
    if series.rolled is not None:
        return series.rolled
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(series.index):
        groups.setdefault(truncate(t, p.aggr_period) if p.aggr_period else "", []).append(i)
    starts = sorted(groups)
    values = {n: [aggregate_values([col[i] for i in groups[s]], p.aggr_method) for s in starts]
              for n, col in series.columns.items()}
    return Buckets(series, starts, values)


def page_buckets(all_buckets: list[Buckets], p: Params) -> list[Buckets]:
    """LIMIT/OFFSET over (entity, bucket) rows, newest first per entity with lastN, given back oldest first."""
    if p.last_n is None and p.offset == 0 and sum(len(b.starts) for b in all_buckets) <= p.window:
        # the page is every row (one entity's month of hours, say): each kept whole, as below, without the row list
        return [Buckets(b.series, list(b.starts), {n: list(v) for n, v in b.values.items()}) for b in all_buckets if b.starts]
    rows = [(b, i) for b in sorted(all_buckets, key=lambda b: b.series.entity_id)
            for i in (range(len(b.starts) - 1, -1, -1) if p.last_n is not None else range(len(b.starts)))]
    kept = rows[p.offset : p.offset + p.window]
    chosen: dict[int, list[int]] = {}
    for b, i in kept:
        chosen.setdefault(id(b), []).append(i)
    out = []
    for b in all_buckets:
        idx = sorted(chosen.get(id(b), []))
        if idx:
            out.append(Buckets(b.series, [b.starts[i] for i in idx], {n: [v[i] for i in idx] for n, v in b.values.items()}))
    return out


def merge_global(series: list[Series]) -> Series:
    """All the entities' rows as one series (aggrScope=global, which QuantumLeap 1.0 answers 501)."""
    rows: list[tuple[str, dict[str, Any]]] = []
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
