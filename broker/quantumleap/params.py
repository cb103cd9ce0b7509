"""The query parameters and headers of the QuantumLeap API, validated once per request.

QuantumLeap 1.0.0 validates them in three places: connexion against
specification/quantumleap.yml (types, enums), src/reporter/reporter.py:222-246
(`_validate_query_params`) and the SQL translator (src/translators/
sql_translator.py:777-793 `_get_limit`, 849-854 `_parse_date`). `Params.parse`
does all of it; the differences are in the README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from broker.quantumleap.errors import QLError, bad
from broker.query.regex import compile_pattern
from broker.temporal.model import to_us
from broker.temporal.storage import TimeRange
from models.errors import BadRequestData, InvalidQuery

AGGR_METHODS = ("count", "sum", "avg", "min", "max")
AGGR_PERIODS = ("year", "month", "day", "hour", "minute", "second")
DEFAULT_LIMIT = 10_000  # specification/quantumleap.yml:309, sql_translator.py:779 (config default_limit)
_SERVICE = re.compile(r"[A-Za-z0-9_\-]{1,50}")


@dataclass(slots=True)
class Params:
    """The query parameters common to every QuantumLeap query endpoint."""

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
    id_pattern: str | None = None

    @classmethod
    def parse(cls, q: Any) -> Params:
        """Validated parameters of a query string (a Mapping); QLError 400 on bad input."""
        p = cls()
        for name in ("fromDate", "toDate"):
            text = q.get(name)
            if text:
                try:
                    value = to_us(text.strip('"'), name)
                except BadRequestData:
                    raise bad(f"{name} must be an ISO 8601 date-time, got {text!r}", "InvalidParameterValue") from None
                if name == "fromDate":
                    p.from_us, p.from_text = value, text
                else:
                    p.to_us, p.to_text = value, text
        p.last_n = _int(q, "lastN", None, 1)
        limit = _int(q, "limit", DEFAULT_LIMIT, 1) or DEFAULT_LIMIT
        p.limit = min(limit, DEFAULT_LIMIT)  # sql_translator.py:781-782: above the maximum is the maximum
        p.offset = _int(q, "offset", 0, 0) or 0
        method = q.get("aggrMethod") or None
        period = q.get("aggrPeriod") or None
        if method is not None and method.lower() not in AGGR_METHODS:
            raise bad(f"aggrMethod must be one of {', '.join(AGGR_METHODS)}, got {method!r}")
        if period is not None and period.lower() not in AGGR_PERIODS:
            raise bad(f"aggrPeriod must be one of {', '.join(AGGR_PERIODS)}, got {period!r}")
        if period and not method:
            raise bad("aggrMethod is compulsory when using aggrPeriod.")
        scope = q.get("aggrScope") or "entity"
        if scope not in ("entity", "global"):
            raise bad(f"aggrScope must be entity or global, got {scope!r}")
        p.aggr_method = method.lower() if method else None
        p.aggr_period = period.lower() if period else None
        p.aggr_scope = scope
        options = [o.strip() for o in (q.get("options") or "").split(",") if o.strip()]
        unknown = [o for o in options if o not in ("keyValues", "values")]
        if unknown:  # QuantumLeap answers 501 to any option; keyValues/values change nothing in these shapes
            raise bad(f"unsupported options {unknown}: only keyValues and values are accepted")
        georel, geometry, coords = q.get("georel"), q.get("geometry"), q.get("coords")
        if georel or geometry or coords:
            if not (georel and geometry and coords):
                raise QLError(400, "ValueError", "Invalid geographical query parameters")
            p.geo = (georel, geometry, coords)
        pattern = q.get("idPattern") or None
        if pattern is not None:
            try:
                compile_pattern(pattern, "idPattern", ignore_case=True)
            except InvalidQuery as exc:
                raise bad(exc.detail) from None
            p.id_pattern = pattern
        return p

    def time_range(self) -> TimeRange:
        """[fromDate, toDate] as a storage range: both ends inclusive (sql_translator.py:803-808)."""
        end = self.to_us + 1 if self.to_us is not None else None
        return TimeRange(None, self.from_us, end)

    @property
    def window(self) -> int:
        """Rows a query returns at most: min(lastN, limit) (sql_translator.py:777-793)."""
        return min(self.last_n, self.limit) if self.last_n is not None else self.limit


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


def split_list(text: str | None) -> list[str] | None:
    """A comma-separated parameter (id, attrs) as its items, None when absent or empty."""
    items = [s.strip() for s in text.split(",") if s.strip()] if text else []
    return items or None


def query_tenant(request: Request) -> str:
    """The tenant of a query: Fiware-Service only, lowercased (query_1T1E1A.py:38; sql_translator.py:174-185 `_et2tn`)."""
    return tenant_of(request.headers.get("fiware-service"))


def write_tenant(request: Request) -> str:
    """The tenant of a notification or a delete: NGSILD-Tenant first, then Fiware-Service (httputil.py:4-15)."""
    return tenant_of(request.headers.get("ngsild-tenant") or request.headers.get("fiware-service"))


def tenant_of(service: str | None) -> str:
    """The tenant a Fiware-Service (or NGSILD-Tenant) header's text names; QLError 400 when malformed."""
    # QuantumLeap keeps a tenant in the schema "mt" + service.lower(): City and city are one tenant
    service = (service or "").strip()
    if service and not _SERVICE.fullmatch(service):
        raise QLError(400, "InvalidHeaderValue", f"invalid Fiware-Service {service!r}")
    return service.lower()


def service_paths(request: Request) -> list[str]:
    """The Fiware-ServicePath header as a list of paths; ['/'] when absent or empty (httputil.py:18-22)."""
    return paths_of(request.headers.get("fiware-servicepath"))


def paths_of(text: str | None) -> list[str]:
    """`service_paths` of a Fiware-ServicePath header's text (None: absent)."""
    if text is None or not text.strip():
        return ["/"]
    paths = [p.strip() for p in text.split(",")]
    for path in paths:
        if not path.startswith("/"):
            raise QLError(400, "InvalidHeaderValue", f"Fiware-ServicePath must start with '/', got {text!r}")
    return [p.rstrip("/") or "/" for p in paths]


def path_matches(stored: str | None, wanted: list[str]) -> bool:
    """Whether an entity stored under `stored` (None: '/') is in the scope of the wanted paths.

    sql_translator.py:810-824: '/' is every path; '/a' is '/a' and everything below it,
    compared case-insensitively (`~*`); a list is any of its paths.
    """
    path = (stored or "/").lower()
    for w in wanted:
        if w == "/":
            return True
        w = w.lower()
        if path == w or path.startswith(w + "/"):
            return True
    return False
