"""An NGSI-LD temporal API client (httpx): the history of entities, every page of it.

    tc = TemporalClient("http://127.0.0.1:1026", tenant="city", context="https://smartdatamodels.org/context.jsonld")
    tc.entity("urn:ngsi-ld:Room:1", attrs=["temperature"], timerel="after", time_at="2026-01-01T00:00:00Z")
    tc.query(type="Room", attrs=["temperature"], last_n=10)
    tc.series("urn:ngsi-ld:Room:1", "temperature")        # [(time, value), ...] oldest first

A broker answers 206 Partial Content with a `Content-Range: DateTime
<start>-<end>/<size>` header when it capped the instances of a response
(clause 6.3.10); the client then asks for the rest (from `end` on, leaving
out what that page already held at `end`, or, for lastN, before it) and
merges the pages, so the caller always gets the whole series. Errors raise
`TemporalError` with the ProblemDetails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

import httpx

from models.media import API

_RANGE = re.compile(r"^DateTime\s+(.+)-(\d{4}-\d{2}-\d{2}T\S+)/(\S+)$")
_CORE = ("id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt")
_LISTS = ("values", "objects", "languageMaps", "vocabs", "jsons", "valueLists", "objectLists")
MAX_PAGES = 1000


class TemporalError(Exception):
    """An error answer of the temporal API (ProblemDetails when the broker gave one)."""

    def __init__(self, status: int, problem: Any) -> None:
        detail = problem.get("detail") or problem.get("title") if isinstance(problem, dict) else problem
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.problem = problem


def parse_content_range(header: str | None) -> tuple[str, str, str] | None:
    """(start, end, size) of a `DateTime start-end/size` Content-Range, or None."""
    m = _RANGE.match((header or "").strip())
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _member(slot: dict[str, Any]) -> str | None:
    return next((m for m in _LISTS if m in slot), None)


def merge_entity(into: dict[str, Any], page: dict[str, Any], *, prepend: bool) -> None:
    """Add a page's instances (normalized) or temporal values (per datasetId) to `into`, in time order."""
    for key, value in page.items():
        if key in _CORE:
            into.setdefault(key, value)
            continue
        current = _as_list(into.get(key, []))
        block = []  # normalized instances of this page, in their order
        for item in _as_list(value):
            member = _member(item) if isinstance(item, dict) else None
            if member is None:
                block.append(item)
                continue
            slot = next((s for s in current if isinstance(s, dict) and s.get("datasetId") == item.get("datasetId")
                         and _member(s) == member), None)
            if slot is None:
                current.append(dict(item))
            else:
                slot[member] = [*item[member], *slot[member]] if prepend else [*slot[member], *item[member]]
        into[key] = [*block, *current] if prepend else [*current, *block]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python 3.11 reads the Z


def _without_time(payload: Any, at: datetime, timeproperty: str) -> Any:
    """The page without the instances and values at `at` (the previous page's range-end, which held them all)."""
    if isinstance(payload, list):
        return [_without_time(e, at, timeproperty) for e in payload]
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _CORE:
            out[key] = value
            continue
        kept = []
        for item in _as_list(value):
            member = _member(item) if isinstance(item, dict) else None
            if member is not None:
                kept.append({**item, member: [v for v in item[member] if _instant(v[1]) != at]})
            elif not (isinstance(item, dict) and isinstance(item.get(timeproperty), str) and _instant(item[timeproperty]) == at):
                kept.append(item)
        out[key] = kept if isinstance(value, list) else (kept[0] if kept else [])
    return out


class TemporalClient:
    """The temporal API of the NGSI-LD broker at `base_url` (with or without /ngsi-ld/v1), for one tenant and @context."""

    def __init__(self, base_url: str, tenant: str | None = None, context: str | None = None, *,
                 client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        root = base_url.rstrip("/")
        self.api = root if root.endswith(API) else root + API
        self.tenant = tenant
        self.context = context
        self.http = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.tenant:
            headers["NGSILD-Tenant"] = self.tenant
        if self.context:
            headers["Link"] = f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        return headers

    @staticmethod
    def _params(attrs: Sequence[str] | None, timerel: str | None, time_at: str | None, end_time_at: str | None,
                last_n: int | None, temporal_values: bool, timeproperty: str | None, extra: dict[str, Any]) -> dict[str, str]:
        params = {k: (",".join(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in extra.items() if v is not None}
        if attrs:
            params["attrs"] = ",".join(attrs)
        if timerel:
            params["timerel"] = timerel
        if time_at:
            params["timeAt"] = time_at
        if end_time_at:
            params["endTimeAt"] = end_time_at
        if last_n is not None:
            params["lastN"] = str(last_n)
        if timeproperty:
            params["timeproperty"] = timeproperty
        if temporal_values:
            params["options"] = "temporalValues"
        return params

    def _pages(self, path: str, params: dict[str, str]) -> list[tuple[Any, bool]]:
        """Every page of a temporal GET: (payload, prepend) pairs, following 206 Content-Range."""
        pages: list[tuple[Any, bool]] = []
        timerel, time_at, end = params.get("timerel"), params.get("timeAt"), params.get("endTimeAt")
        newest = "lastN" in params
        boundary: datetime | None = None
        for _ in range(MAX_PAGES):
            response = self.http.get(self.api + path, params=params, headers=self._headers())
            if response.status_code >= 400:
                try:
                    problem: Any = response.json()
                except ValueError:
                    problem = response.text
                raise TemporalError(response.status_code, problem)
            payload = response.json()
            if boundary is not None:  # a forward page starts at the last one's range-end, which it already held
                payload = _without_time(payload, boundary, params.get("timeproperty") or "observedAt")
            pages.append((payload, newest and len(pages) > 0))
            rng = parse_content_range(response.headers.get("Content-Range")) if response.status_code == 206 else None
            if rng is None or not payload:
                break
            cut = rng[1]
            boundary = None if newest else _instant(cut)
            params = dict(params)
            if newest:  # range-end is the page's least recent time (clause 6.3.10): ask for what is before it
                upper = cut
                if timerel in ("after", "between") and time_at:
                    params.update(timerel="between", timeAt=time_at, endTimeAt=upper)
                else:
                    params.update(timerel="before", timeAt=upper)
                    params.pop("endTimeAt", None)
            else:  # range-end is the page's most recent time (clause 6.3.10): ask from it on (after is inclusive)
                if timerel == "between" and end:
                    params.update(timerel="between", timeAt=cut, endTimeAt=end)
                elif timerel == "before" and time_at:
                    params.update(timerel="between", timeAt=cut, endTimeAt=time_at)
                else:
                    params.update(timerel="after", timeAt=cut)
                    params.pop("endTimeAt", None)
        return pages

    def entity(self, entity_id: str, attrs: Sequence[str] | None = None, timerel: str | None = None,
               time_at: str | None = None, end_time_at: str | None = None, last_n: int | None = None,
               temporal_values: bool = True, timeproperty: str | None = None, **extra: Any) -> dict[str, Any]:
        """Retrieve Temporal Evolution of an Entity, every page merged."""
        params = self._params(attrs, timerel, time_at, end_time_at, last_n, temporal_values, timeproperty, extra)
        merged: dict[str, Any] = {}
        for payload, prepend in self._pages(f"/temporal/entities/{entity_id}", params):
            merge_entity(merged, payload, prepend=prepend)
        return _trim(merged, last_n)

    def query(self, type: str | None = None, ids: Sequence[str] | None = None, attrs: Sequence[str] | None = None,
              q: str | None = None, timerel: str | None = None, time_at: str | None = None, end_time_at: str | None = None,
              last_n: int | None = None, temporal_values: bool = True, timeproperty: str | None = None,
              **extra: Any) -> list[dict[str, Any]]:
        """Query Temporal Evolution of Entities (one page of entities: limit/offset in `extra`), every instance page merged."""
        params = self._params(attrs, timerel, time_at, end_time_at, last_n, temporal_values, timeproperty,
                              {"type": type, "id": list(ids) if ids else None, "q": q, **extra})
        merged: dict[str, dict[str, Any]] = {}
        for payload, prepend in self._pages("/temporal/entities", params):
            for entity in payload:
                merge_entity(merged.setdefault(entity["id"], {}), entity, prepend=prepend)
        return [_trim(e, last_n) for e in merged.values()]

    def series(self, entity_id: str, attr: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """(time, value) pairs of one attribute (default instances) of one entity, oldest first; [] when none."""
        try:
            entity = self.entity(entity_id, attrs=[attr], temporal_values=True, **kwargs)
        except TemporalError as exc:
            if exc.status == 404:
                return []
            raise
        for slot in _as_list(entity.get(attr, [])):
            if isinstance(slot, dict) and not slot.get("datasetId"):
                member = _member(slot)
                return [(t, v) for v, t in slot.get(member, [])] if member else []
        return []


def _trim(entity: dict[str, Any], last_n: int | None) -> dict[str, Any]:
    """At most lastN values per attribute (pages of a lastN query may overlap in count)."""
    if last_n is None:
        return entity
    for key, value in entity.items():
        if key in _CORE or not isinstance(value, list):
            continue
        for slot in value:
            member = _member(slot) if isinstance(slot, dict) else None
            if member:
                slot[member] = slot[member][-last_n:]
        if value and not any(isinstance(s, dict) and _member(s) for s in value):
            entity[key] = value[-last_n:]
    return entity
