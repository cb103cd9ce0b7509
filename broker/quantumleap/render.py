"""From rebuilt rows to the series an answer shows: raw, or aggregated per entity or globally.

Which index an aggregation without aggrPeriod shows depends on the endpoint
in QuantumLeap 1.0.0, and is chosen by the route: [] (query_1T1E1A.py:84,
query_1T1ENA.py:100), [fromDate, toDate] as given or '' when absent
(query_1TNE1A.py:126-128, only for ids named in `id`), or both dates read as
UTC ISO text (query_1TNENA.py:136-146, query_NTNE1A.py:104-115,
query_NTNENA.py:104-116).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from broker.quantumleap.params import Params
from broker.quantumleap.series import Series, aggregate, merge_global, page_buckets


def views(series: list[Series], p: Params) -> list[Series]:
    """The series as shown: raw, or aggregated per entity with buckets paged per type (index [] without a period)."""
    if p.aggr_method is None:
        return series
    out: list[Series] = []
    for group in _by_type(series):
        for b in page_buckets([aggregate(s, p) for s in group], p):
            out.append(Series(b.series.entity_id, b.series.entity_type, b.starts if p.aggr_period else [], b.values))
    return out


def global_view(series: list[Series], p: Params) -> Series:
    """aggrScope=global: one series over all the entities given; without a period its index is the data's time span."""
    merged = merge_global(series)
    span = [merged.index[0], merged.index[-1]] if merged.index else []
    pages = page_buckets([aggregate(merged, p)], p)
    if not pages:
        return Series("", merged.entity_type, [], {n: [] for n in merged.columns})
    b = pages[0]
    return Series("", merged.entity_type, b.starts if p.aggr_period else span, b.values)


def _by_type(series: list[Series]) -> list[list[Series]]:
    groups: dict[str, list[Series]] = {}
    for s in series:
        groups.setdefault(s.entity_type.lower(), []).append(s)
    return [groups[k] for k in sorted(groups)]


def by_type(series: list[Series]) -> list[list[Series]]:
    """Series grouped by type, types in QuantumLeap's table order (lowercased names), ids in order within."""
    return _by_type(series)


def column(s: Series, name: str) -> list[Any] | None:
    """The values of the attribute `name`, matched case-insensitively (src/utils/jsondict.py lookup_string_match)."""
    if name in s.columns:
        return s.columns[name]
    low = name.lower()
    return next((v for k, v in s.columns.items() if k.lower() == low), None)


def attributes(s: Series) -> list[dict[str, Any]]:
    """[{"attrName", "values"}] by name, as QuantumLeap sorts them (query_1T1ENA.py:92-98)."""
    return [{"attrName": n, "values": s.columns[n]} for n in sorted(s.columns)]


def utc_dates(p: Params) -> list[str]:
    """fromDate and toDate read as UTC ISO text, '' when absent (query_1TNENA.py:136-146)."""
    return [_utc_iso(p.from_text), _utc_iso(p.to_text)]


def raw_dates(p: Params) -> list[str]:
    """fromDate and toDate as given, '' when absent (query_1TNE1A.py:126-128)."""
    return [p.from_text or "", p.to_text or ""]


def _utc_iso(text: str | None) -> str:
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return ""
    return moment.replace(tzinfo=UTC).isoformat()
