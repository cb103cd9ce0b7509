"""Where the dashboard reads: the NGSI-LD API of any broker (entities, and history through the temporal API).

Answers are kept `ttl` seconds, so a page view costs the broker a handful of
requests at most and a crowd of readers costs it no more than one.
History comes back as (time, value) pairs, oldest first, with one value per
time (the last written: the indicators service rewrites today's instance
while the day goes on).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import httpx

from adapters.temporal import TemporalClient, TemporalError
from indicators.entities import PROVIDER
from indicators.service import SENSOR_TYPES
from indicators.timebase import iso, local_at, parse_time
from models.context.smart_data_models import SDM_ALL_CONTEXT_URL

PAGE = 100
Series = list[tuple[datetime, Any]]


class BrokerSource:
    """Reads one tenant of an NGSI-LD broker, with a short cache."""

    def __init__(self, broker_url: str, tenant: str, context: str = SDM_ALL_CONTEXT_URL, *, ttl: float = 5.0) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.tenant = tenant
        self.context = context
        self.ttl = ttl
        self.http = httpx.Client(timeout=15)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json",
                   "Link": f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
        if self.tenant:
            headers["NGSILD-Tenant"] = self.tenant
        return headers

    def _cached(self, key: str, load: Any) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (time.monotonic() + self.ttl, value)
        return value

    def entities(self, **params: str) -> list[dict[str, Any]]:
        """Every entity the query matches, in keyValues (every page); [] when the tenant does not exist yet."""
        def load() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            offset = 0
            while True:
                response = self.http.get(f"{self.broker_url}/ngsi-ld/v1/entities", headers=self._headers(), params={
                    **params, "options": "keyValues", "limit": str(PAGE), "offset": str(offset)})
                if response.status_code == 404:
                    return out
                response.raise_for_status()
                page = response.json()
                out.extend(page)
                if len(page) < PAGE:
                    return out
                offset += PAGE
        result: list[dict[str, Any]] = self._cached("E" + repr(sorted(params.items())), load)
        return result

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        """One entity in keyValues, None when absent."""
        def load() -> dict[str, Any] | None:
            response = self.http.get(f"{self.broker_url}/ngsi-ld/v1/entities/{entity_id}", headers=self._headers(),
                                     params={"options": "keyValues"})
            if response.status_code == 404:
                return None
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found
        result: dict[str, Any] | None = self._cached("1" + entity_id, load)
        return result

    def history(self, entity_id: str, attrs: Sequence[str], start: datetime, end: datetime) -> dict[str, Series]:
        """Each attribute's (time, value) pairs over [start, end), oldest first, one per time (the last written)."""
        def load() -> dict[str, Series]:
            client = TemporalClient(self.broker_url, tenant=self.tenant, context=self.context, client=self.http)
            try:
                entity = client.entity(entity_id, attrs=list(attrs), timerel="between", time_at=iso(start),
                                       end_time_at=iso(end))
            except TemporalError as exc:
                if exc.status == 404:
                    return {}
                raise
            out: dict[str, Series] = {}
            for attr in attrs:
                slots = entity.get(attr, [])
                for slot in slots if isinstance(slots, list) else [slots]:
                    if isinstance(slot, dict) and "values" in slot and not slot.get("datasetId"):
                        by_time = {parse_time(t): v for v, t in slot["values"]}
                        out[attr] = sorted(by_time.items(), key=lambda p: p[0])
            return out
        result: dict[str, Series] = self._cached(f"H{entity_id}|{','.join(attrs)}|{iso(start)}|{iso(end)}", load)
        return result

    def daily(self, entity_id: str, attrs: Sequence[str], start: datetime, end: datetime) -> dict[str, Series]:
        """A daily indicator's values by day (keyed by the day's local midnight, in UTC), oldest first: per
        `dateObserved`, the final instance when there is one, else the latest provisional one."""
        raw = self.history(entity_id, list(dict.fromkeys([*attrs, "dateObserved", "provisional"])), start, end)
        days = dict(raw.get("dateObserved", []))
        final = dict(raw.get("provisional", []))
        chosen: dict[str, datetime] = {}
        for moment in sorted(days):
            day = str(days[moment])
            current = chosen.get(day)
            if current is None or final.get(current) is not False:  # keep a final one; else take the later one
                chosen[day] = moment
        out: dict[str, Series] = {}
        for attr in attrs:
            by_time = dict(raw.get(attr, []))
            out[attr] = [(local_at(date.fromisoformat(day), 0), by_time[moment])
                         for day, moment in sorted(chosen.items()) if moment in by_time]
        return out

    # -- what the pages ask for ---------------------------------------------------------

    def indicators(self, entity_type: str, indicator: str, scope: str) -> list[dict[str, Any]]:
        """The current state of one kind of indicator entity."""
        return self.entities(type=entity_type, q=f'indicator=="{indicator}";indicatorPlace=="{scope}"')

    def sensors(self) -> list[dict[str, Any]]:
        """The measuring entities (ours left out)."""
        found = self.entities(type=",".join(SENSOR_TYPES))
        return [e for e in found if e.get("dataProvider") != PROVIDER]
