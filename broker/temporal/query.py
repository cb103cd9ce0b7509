"""The temporal part of a request (clauses 4.11, 4.5.19, 4.21, 6.3.12, 6.3.20): what to read and how to show it.

    timerel, timeAt, endTimeAt, timeproperty      the time range (clause 4.11)
    lastN                                         the last n instances per attribute (clause 5.7.3.4)
    format / options                              normalized, temporalValues or aggregatedValues (6.3.12),
                                                  format winning over options; sysAttrs
    aggrMethods, aggrPeriodDuration               aggregation (clause 4.5.19)
    datasetId                                     the attribute instances kept (clause 4.5.5)
    pick, omit                                    entity members kept or dropped (clause 4.21)

An `options` or `format` value the temporal API does not know is an
InvalidRequest (clause 6.3.20); a malformed value of a known parameter is
BadRequestData.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.query.projection import Projection, parse_projection
from broker.temporal.model import to_us
from broker.temporal.storage import TIME_COLUMNS, TimeRange
from models.errors import BadRequestData, InvalidQuery, InvalidRequest
from models.validation import check_uri

AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
FORMATS = ("temporalValues", "aggregatedValues")
OPTIONS = frozenset({"temporalValues", "aggregatedValues", "sysAttrs"})
_DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def duration_us(text: str) -> int:
    """An ISO 8601 duration (clause 4.5.19.1) in microseconds; a month counts 30 days, a year 365."""
    m = _DURATION.fullmatch(text or "")
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise BadRequestData(f"aggrPeriodDuration must be an ISO 8601 duration, got {text!r}")
    y, mo, w, d, h, mi = (int(g) if g else 0 for g in m.groups()[:6])
    s = float(m.group(7) or 0)
    days = y * 365 + mo * 30 + w * 7 + d
    return int(((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000)


def _listed(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value).split(",") if p.strip()] if value else []


def _mode(params: Mapping[str, Any]) -> tuple[str, bool]:
    """The representation and sysAttrs, from format (which wins) and options."""
    options = _listed(params.get("options"))
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise InvalidRequest(f"options {unknown} are not supported by the temporal API (use {', '.join(sorted(OPTIONS))})")
    chosen = [o for o in options if o in FORMATS]
    if len(chosen) > 1:
        raise InvalidRequest("options may name only one of temporalValues and aggregatedValues (clause 6.3.12)")
    fmt = params.get("format")
    if fmt not in (None, "", "normalized") and fmt not in FORMATS:
        raise InvalidRequest(f"format must be temporalValues or aggregatedValues, got {fmt!r}")
    mode = fmt if fmt in FORMATS else ("normalized" if fmt == "normalized" else (chosen[0] if chosen else "normalized"))
    return mode, "sysAttrs" in options


def _projection(params: Mapping[str, Any], name: str) -> Projection | None:
    value = params.get(name)
    if value in (None, "", []):
        return None
    text = ",".join(value) if isinstance(value, list) else str(value)
    try:
        return parse_projection(text)
    except InvalidQuery as exc:
        raise BadRequestData(f"{name}: {exc.detail}") from None


def _datasets(value: Any) -> list[str] | None:
    names = _listed(value)
    if not names:
        return None
    for name in names:
        if name != "@none":
            check_uri(name, "datasetId")
    return ["" if n == "@none" else n for n in names]


@dataclass(slots=True)
class TemporalQuery:
    """The temporal part of a query (clause 4.11) and how to render it."""

    timerel: str | None = None
    time_at: int | None = None
    end_time_at: int | None = None
    timeproperty: str = "observedAt"
    timeproperty_given: bool = False
    last_n: int | None = None
    mode: str = "normalized"  # normalized | temporalValues | aggregatedValues
    aggr_methods: list[str] = field(default_factory=list)
    period_us: int = 0
    sys_attrs: bool = False
    datasets: list[str] | None = None  # '' stands for the default instance (@none)
    pick: Projection | None = None
    omit: Projection | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, attrs_given: bool = False) -> TemporalQuery:
        """Read the parameters of clause 6.18.3.2 that shape a temporal read; errors as clause 6.3.20 wants."""
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
        mode, sys_attrs = _mode(params)
        methods: list[str] = []
        period = 0
        if mode == "aggregatedValues":
            methods = _listed(params.get("aggrMethods"))
            if not methods:
                raise BadRequestData("aggregatedValues needs aggrMethods")
            unknown = [m for m in methods if m not in AGGR_METHODS]
            if unknown:
                raise BadRequestData(f"unknown aggrMethods {unknown}: use {', '.join(AGGR_METHODS)}")
            period = duration_us(params.get("aggrPeriodDuration") or "PT0S")
        pick, omit = _projection(params, "pick"), _projection(params, "omit")
        if pick is not None and omit is not None and set(pick.names()) & set(omit.names()):
            raise BadRequestData("an entity member cannot be both picked and omitted")
        if attrs_given and (pick is not None or omit is not None):
            raise BadRequestData("attrs cannot be combined with pick or omit (attrs is a deprecated form of pick)")
        return cls(
            timerel,
            to_us(str(time_at), "timeAt") if timerel else None,
            to_us(str(end), "endTimeAt") if timerel == "between" and end else None,
            prop, bool(params.get("timeproperty")), last_n, mode, methods, period, sys_attrs,
            _datasets(params.get("datasetId")), pick, omit,
        )

    def time_range(self) -> TimeRange:
        """The rows the query reads: a bounded range of the time property, or every row that has it."""
        column = TIME_COLUMNS[self.timeproperty]
        if self.timerel == "before":
            return TimeRange(column, None, self.time_at)
        if self.timerel == "after":
            return TimeRange(column, self.time_at, None)
        if self.timerel == "between":
            return TimeRange(column, self.time_at, self.end_time_at)
        # no timerel: every instance, but only those that have the asked time property (clause 4.11,
        # last sentence), e.g. timeproperty=deletedAt lists the deletions
        return TimeRange(column) if self.timeproperty_given else TimeRange(None)


def check_order_by(value: str | None) -> bool | None:
    """Clause 5.7.4.4: orderBy only on "id"; whether descending (None without orderBy).

    The clause also refuses orderBy when the query is not limited to the local scope; this broker
    takes it with or without local=true, as Query Entities takes orderBy: without registrations every
    query runs on local data alone, and with them the entities the sources add are sorted in by id
    (broker.api.temporal).
    """
    if not value:
        return None
    member, _, style = value.partition(";")
    if member != "id" or "," in value or style not in ("", "asc", "desc"):
        raise BadRequestData(f"a temporal query can only be ordered by id (id;asc or id;desc), got {value!r}")
    return style == "desc"
