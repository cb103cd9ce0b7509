"""Hourly rollups of history: what aggregation reads instead of every instance.

`temporal_rollup` holds, per (tenant, entity, attribute, hour of the key
time, datasetId, whether the instance has an observedAt), the aggregates of
the value instances (kind 0) in that hour:

    n       instances                       n_num   instances with a numeric value_num
    n_pure  values that are JSON numbers    n_int   values that are JSON integers
    sum, min, max, sumsq                    of value_num

Both stores keep it up to date in the transaction that writes instances: an
inserted instance adds itself to its hour (a trigger); an instance replaced
or deleted makes its hour be recomputed from the instances before the
transaction commits, so min and max stay exact. An aggregation whose periods
are whole hours from an hour-aligned origin then reads one row per hour
instead of every instance, and the instances only for the partial hours at
the ends of its time range. distinctCount needs the values themselves: it
always reads the instances.

Sums are added hour by hour: equal to a sum over the instances whenever the
values and their partial sums are exact in binary floating point (integers,
halves, quarters...), and otherwise equal up to the order of the additions
(the last bit or so of a double).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from broker.temporal.storage import TimeRange

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# calendar units a QuantumLeap aggrPeriod may name that hours tile exactly (UTC)
UNITS = ("hour", "day", "month", "year")


def hour_sql(column: str) -> str:
    """The start of the hour of `column` (floor, also before 1970)."""
    return f"({column} - ((({column} % {HOUR_US}) + {HOUR_US}) % {HOUR_US}))"


@dataclass(frozen=True, slots=True)
class Plan:
    """How a time range splits: whole hours [hours_from, hours_to) from rollups, the rest from instances.

    A bound None is open. `edges` are the [start, end) ranges of instances to read, at most two.
    """

    hours_from: int | None
    hours_to: int | None
    edges: tuple[tuple[int | None, int | None], ...]
    observed: bool


def plan(rng: TimeRange, origin_us: int = 0, period_us: int = 0) -> Plan | None:
    """The split of `rng` for periods of `period_us` from `origin_us` (0: one period), or None when rollups cannot serve.

    They serve ranges on the key time (no column, or observedAt, which the key
    is wherever an instance has one) whose periods are whole hours from an
    hour-aligned origin.
    """
    if rng.column not in (None, "observed_us"):
        return None
    if origin_us % HOUR_US or period_us % HOUR_US:
        return None
    start, end = rng.start, rng.end
    first = None if start is None else -((-start) // HOUR_US) * HOUR_US  # ceil to the hour
    last = None if end is None else (end // HOUR_US) * HOUR_US  # floor
    if first is not None and last is not None and first >= last:
        return None  # within one hour: nothing to gain
    edges: list[tuple[int | None, int | None]] = []
    if start is not None and first is not None and start < first:
        edges.append((start, first))
    if end is not None and last is not None and last < end:
        edges.append((last, end))
    return Plan(first, last, tuple(edges), rng.column == "observed_us")


class RollupBucket(NamedTuple):
    """Aggregates of one attribute of one entity over one period, from rollups (a named tuple: many are made).

    `period_no` counts periods from the origin, or is the period's start (microseconds) for a calendar unit.
    `n_ds` counts the instances of non-default datasetIds.
    """

    entity_id: str
    attr: str
    period_no: int  # not `index`: a tuple's method
    n: int
    n_num: int
    n_pure: int
    n_int: int
    n_ds: int
    sum: float | None
    min: float | None
    max: float | None
    sumsq: float | None
