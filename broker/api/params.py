"""The URL parameters each subscription and temporal resource takes (clause 6.3.20).

A parameter an operation does not define is refused with InvalidRequest
before anything else of the request is looked at, so that a misspelt
`timerel` or `lastN` cannot silently widen an answer. The sets are those of
the parameter tables of clauses 6.10-6.11 and 6.18-6.24.
"""

from __future__ import annotations

from fastapi import Request

from models.errors import InvalidRequest

PAGING = frozenset({"limit", "offset", "count"})
SUBSCRIPTION_QUERY = PAGING
NONE: frozenset[str] = frozenset()

_TEMPORAL_READ = frozenset({
    "attrs", "pick", "omit", "timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "options", "format",
    "aggrMethods", "aggrPeriodDuration", "lang", "datasetId", "local", "splitEntities", "entityMap",
    "entityMapLifetime", "expandValues", "jsonKeys", "csf",
})
TEMPORAL_RETRIEVE = _TEMPORAL_READ
TEMPORAL_QUERY = _TEMPORAL_READ | PAGING | frozenset({
    "id", "idPattern", "type", "q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty", "orderBy", "collation",
})
TEMPORAL_QUERY_POST = PAGING | frozenset({
    "options", "format", "aggrMethods", "aggrPeriodDuration", "lastN", "pick", "omit", "datasetId", "orderBy", "local",
    "lang", "splitEntities", "entityMap", "entityMapLifetime",
})
TEMPORAL_DELETE_ATTR = frozenset({"datasetId", "deleteAll"})


def check_params(request: Request, allowed: frozenset[str]) -> None:
    """InvalidRequest naming the URL parameters of the request that the operation does not take."""
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        raise InvalidRequest(f"unknown parameter(s) {', '.join(unknown)} for {request.method} {request.url.path}")
