"""The indicators service: reads measures through the NGSI-LD temporal API, writes indicators through the broker API.

    service = IndicatorService(IndicatorSettings(broker_url="http://127.0.0.1:1026", tenant="metropole"))
    await service.catch_up()                      # what changed since the last pass (the first: the lookback)
    await service.compute_period(date(2026, 11, 1), date(2026, 11, 30))   # on demand, a past period
    await service.run(stop)                       # catch up every `interval` seconds until `stop` is set

Incremental rule: each pass lists the measuring entities (types of
`SENSOR_TYPES`, ours left out) with their `modifiedAt`; a sensor that is new
is computed over the lookback window, one whose `modifiedAt` moved is
recomputed from the day before its previously latest measure to today (a
Lden night and the Tn window reach into the day before). Measures backfilled
older than that are taken by `compute_period` (`metropole indicators compute`).
The towns of the sensors touched are aggregated again from every sensor's
results, which the service keeps for the lookback window.

Completeness: a day is final once its span is over *and* the sensor's
measures are known to cover it: a device's measures arrive oldest first, so
while a sensor is being written to, its latest measure is the horizon (a
backfill half way through a day leaves that day provisional); a sensor quiet
for `QUIET` has its horizon at the present. Days before the horizon are
written as final instances, the day at the horizon as provisional
(`entities` says which observedAt each gets).

Writes go in time order, one batch upsert per observedAt, so each entity's
current state is its latest instance. An instance identical to the one
already written is not sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from adapters.ngsild import NgsiLdClient
from adapters.temporal import TemporalClient, TemporalError
from indicators.compute import (
    MEASURED,
    PlacedSensor,
    SensorResults,
    compute_sensor,
    days_between,
    sensor_entities,
    town_entities,
)
from indicators.entities import Entity, is_indicator
from indicators.timebase import iso, local_at, local_day, parse_time
from indicators.towns import Town, town_of
from models.context.smart_data_models import SDM_ALL_CONTEXT_URL
from models.errors import NgsiLdError
from web.settings import EnvFloat, EnvInt, EnvSettings, load, var

log = logging.getLogger("indicators")

SENSOR_TYPES = ("AirQualityObserved", "NoiseLevelObserved", "WeatherObserved")
QUIET = timedelta(minutes=30)
PAGE = 100


class IndicatorEnv(EnvSettings):
    """The variables of `IndicatorSettings` (pydantic-settings, web/settings.py)."""

    broker_url: str = var("METROPOLE_INDICATORS_BROKER_URL")
    tenant: str = var("METROPOLE_INDICATORS_TENANT")
    context: str = var("METROPOLE_INDICATORS_CONTEXT")
    interval: EnvFloat = var("METROPOLE_INDICATORS_INTERVAL")
    lookback_days: EnvInt = var("METROPOLE_INDICATORS_LOOKBACK_DAYS")


@dataclass(frozen=True)
class IndicatorSettings:
    """Where the service reads and writes, and how often (env: METROPOLE_INDICATORS_*)."""

    broker_url: str = "http://127.0.0.1:1026"
    tenant: str = "metropole"
    context: str = SDM_ALL_CONTEXT_URL
    interval: float = 60.0
    lookback_days: int = 35

    @classmethod
    def from_env(cls, **overrides: Any) -> IndicatorSettings:
        """Defaults, then METROPOLE_INDICATORS_{BROKER_URL,TENANT,CONTEXT,INTERVAL,LOOKBACK_DAYS}, then overrides."""
        values: dict[str, Any] = load(IndicatorEnv)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class _Seen:
    modified: str
    latest: datetime | None


@dataclass
class PassReport:
    """What one pass did."""

    sensors: int = 0
    recomputed: int = 0
    written: int = 0
    errors: list[str] = field(default_factory=list)


class IndicatorService:
    """Computes the indicators of the sensors of one tenant and writes them back as entities."""

    def __init__(self, settings: IndicatorSettings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.results: dict[str, SensorResults] = {}
        self.sensors: dict[str, PlacedSensor] = {}
        self._seen: dict[str, _Seen] = {}
        self._written: dict[tuple[str, str], bytes] = {}
        self._horizons: dict[str, datetime] = {}
        self.last_pass: PassReport | None = None
        self.passes = 0

    # -- reading ------------------------------------------------------------------

    async def list_sensors(self, client: NgsiLdClient) -> list[dict[str, Any]]:
        """Every measuring entity of the tenant (normalized, with sysAttrs), ours left out."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            try:
                page = await client.query(tenant=self.settings.tenant, context=self.settings.context, params={
                    "type": ",".join(SENSOR_TYPES), "options": "sysAttrs", "limit": str(PAGE),
                    "offset": str(offset)})
            except NgsiLdError as exc:
                if exc.status == 404:  # the tenant does not exist yet: no sensor
                    return out
                raise
            out.extend(e for e in page if not is_indicator(e))
            if len(page) < PAGE:
                return out
            offset += PAGE

    def read_series(self, sensor_id: str, start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]:
        """The measured attributes of a sensor over [start, end), oldest first."""
        with TemporalClient(self.settings.broker_url, tenant=self.settings.tenant,
                            context=self.settings.context) as temporal:
            try:
                entity = temporal.entity(sensor_id, attrs=list(MEASURED), timerel="between", time_at=iso(start),
                                         end_time_at=iso(end))
            except TemporalError as exc:
                if exc.status == 404:
                    return {}
                raise
        series: dict[str, list[tuple[datetime, float]]] = {}
        for attr in MEASURED:
            slots = entity.get(attr, [])
            for slot in slots if isinstance(slots, list) else [slots]:
                if isinstance(slot, dict) and "values" in slot and not slot.get("datasetId"):
                    series[attr] = sorted((parse_time(t), float(v)) for v, t in slot["values"]
                                          if isinstance(v, (int, float)) and not isinstance(v, bool))
        return series

    # -- computing ------------------------------------------------------------------

    def _place(self, entity: dict[str, Any]) -> PlacedSensor | None:
        location = entity.get("location")
        geometry = location.get("value") if isinstance(location, dict) else None
        coords = geometry.get("coordinates") if isinstance(geometry, dict) and geometry.get("type") == "Point" else None
        if not coords:
            return None
        town = town_of(float(coords[0]), float(coords[1]))
        return PlacedSensor(entity["id"], entity["type"], float(coords[0]), float(coords[1]), town) if town else None

    def horizon(self, entity: dict[str, Any]) -> datetime:
        """Until when a sensor's measures are known to be complete: its latest measure while it is still being
        written to (measures of a device arrive oldest first, a backfill may be half way through a day), the
        present once it has been quiet for `QUIET` (nothing more is coming for the days before)."""
        now = self.clock()
        modified, latest = entity.get("modifiedAt"), _latest(entity)
        if latest is None or not isinstance(modified, str) or now - parse_time(modified) >= QUIET:
            return now
        return min(now, latest)

    def _compute(self, sensor: PlacedSensor, first: date, last: date, now: datetime) -> SensorResults:
        # Heat waves need the two days before; a Lden night and Tx reach into the day after.
        start = local_at(first - timedelta(days=3), 0)
        end = min(local_at(last + timedelta(days=2), 0), self.clock() + timedelta(minutes=1))
        series = self.read_series(sensor.id, start, end)
        days = days_between(first - timedelta(days=2), last)
        return compute_sensor(series, days, now)

    def _entities_for(self, touched: dict[str, tuple[date, date, datetime]]) -> list[Entity]:
        entities: list[Entity] = []
        towns: dict[str, tuple[Town, set[date]]] = {}
        for sensor_id, (first, last, horizon) in touched.items():
            sensor = self.sensors[sensor_id]
            self._horizons[sensor_id] = horizon
            days = days_between(first, last)
            entities.extend(sensor_entities(sensor, self.results[sensor_id], days, horizon))
            slot = towns.setdefault(sensor.town.insee, (sensor.town, set()))
            slot[1].update(days)
        for town, town_days in towns.values():
            members = [s.id for s in self.sensors.values() if s.town.insee == town.insee and s.id in self.results]
            horizon = min((self._horizons.get(m, self.clock()) for m in members), default=self.clock())
            entities.extend(town_entities(town, [self.results[m] for m in members], sorted(town_days), horizon))
        return entities

    # -- writing ----------------------------------------------------------------------

    async def write(self, client: NgsiLdClient, entities: Iterable[Entity]) -> int:
        """Upsert entities in time order (one batch per observedAt), skipping instances already written."""
        by_time: dict[str, list[Entity]] = defaultdict(list)
        for entity in entities:
            observed = next(a["observedAt"] for a in entity.values() if isinstance(a, dict) and "observedAt" in a)
            body = orjson.dumps(entity, option=orjson.OPT_SORT_KEYS)
            key = (entity["id"], observed)
            if self._written.get(key) == hashlib.sha1(body).digest():
                continue
            by_time[observed].append(entity)
        written = 0
        for observed in sorted(by_time):
            batch = by_time[observed]
            outcome = await client.upsert(batch, tenant=self.settings.tenant, context=self.settings.context)
            failed = outcome.failed_ids()
            for entity in batch:
                if entity["id"] not in failed:
                    self._written[(entity["id"], observed)] = hashlib.sha1(
                        orjson.dumps(entity, option=orjson.OPT_SORT_KEYS)).digest()
                    written += 1
            for entity_id, error in outcome.errors:
                log.warning("indicators: broker refused %s at %s: %s", entity_id, observed, error)
        return written

    # -- passes -----------------------------------------------------------------------

    async def catch_up(self) -> PassReport:
        """One incremental pass (see the module's rule)."""
        report = PassReport()
        today = local_day(self.clock())
        floor = today - timedelta(days=self.settings.lookback_days)
        async with NgsiLdClient(self.settings.broker_url) as client:
            listed = await self.list_sensors(client)
            report.sensors = len(listed)
            touched: dict[str, tuple[date, date, datetime]] = {}
            for entity in listed:
                modified = str(entity.get("modifiedAt", ""))
                seen = self._seen.get(entity["id"])
                if seen is not None and seen.modified == modified:
                    continue
                sensor = self._place(entity)
                if sensor is None:
                    continue
                self.sensors[sensor.id] = sensor
                first = floor if seen is None or seen.latest is None else max(floor, local_day(seen.latest) - timedelta(days=1))
                try:
                    results = await asyncio.to_thread(self._compute, sensor, first, today, self.horizon(entity))
                except Exception as exc:  # noqa: BLE001  one sensor's trouble must not stop the others
                    log.warning("indicators: %s not computed: %s", sensor.id, exc)
                    report.errors.append(f"{sensor.id}: {exc}")
                    continue
                current = self.results.setdefault(sensor.id, SensorResults())
                current.update(results)
                self._seen[sensor.id] = _Seen(modified, _latest(entity) or (seen.latest if seen else None))
                touched[sensor.id] = (first, today, self.horizon(entity))
                report.recomputed += 1
            if touched:
                report.written = await self.write(client, self._entities_for(touched))
        self._forget(floor)
        self.last_pass, self.passes = report, self.passes + 1
        return report

    async def compute_period(self, first: date, last: date) -> PassReport:
        """Compute and write every indicator of [first, last] for every sensor, whatever was written before."""
        report = PassReport()
        async with NgsiLdClient(self.settings.broker_url) as client:
            listed = await self.list_sensors(client)
            report.sensors = len(listed)
            touched: dict[str, tuple[date, date, datetime]] = {}
            for entity in listed:
                sensor = self._place(entity)
                if sensor is None:
                    continue
                self.sensors[sensor.id] = sensor
                results = await asyncio.to_thread(self._compute, sensor, first, last, self.horizon(entity))
                self.results.setdefault(sensor.id, SensorResults()).update(results)
                touched[sensor.id] = (first, last, self.horizon(entity))
                report.recomputed += 1
            self._written.clear()
            report.written = await self.write(client, self._entities_for(touched))
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up now, then every `interval` seconds, until `stop` is set; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                report = await self.catch_up()
                if report.recomputed:
                    log.info("indicators: %d sensors, %d recomputed, %d entities written",
                             report.sensors, report.recomputed, report.written)
            except Exception as exc:  # noqa: BLE001  the broker may be away: try again next time
                log.warning("indicators: pass failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.interval)
            except TimeoutError:
                pass

    def _forget(self, floor: date) -> None:
        for results in self.results.values():
            for name in ("atmo", "who", "means", "noise", "heat"):
                table = getattr(results, name)
                for day in [d for d in table if d < floor - timedelta(days=3)]:
                    del table[day]
            for hour in [h for h in results.eaqi if local_day(h) < floor]:
                del results.eaqi[hour]


def _latest(entity: dict[str, Any]) -> datetime | None:
    """The most recent observedAt among the measured attributes of a normalized entity."""
    times = []
    for attr in MEASURED:
        value = entity.get(attr)
        for instance in value if isinstance(value, list) else [value]:
            if isinstance(instance, dict) and isinstance(instance.get("observedAt"), str):
                times.append(parse_time(instance["observedAt"]))
    return max(times, default=None)


def sensors_of(service: IndicatorService, town: str) -> Sequence[PlacedSensor]:
    """The sensors the service placed in a town (INSEE code)."""
    return [s for s in service.sensors.values() if s.town.insee == town]
