"""From a sensor's measures to its indicators, and from sensors' indicators to a town's: pure functions.

    results = compute_sensor(series, days, now)   # series: attribute -> [(time, value)], oldest first
    entities = place_entities(towns_sensors, days, now)

A sensor's measures are grouped into hourly values once (`timebase`), then
every indicator of each day asked for is computed from them. Measured
attributes are the Smart Data Models names: pm25, pm10, no2, o3, so2
(µg/m³), LAeq (dB(A)), temperature (°C).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from indicators.air import (
    AtmoDay,
    EaqiHour,
    Exceedance,
    atmo_day,
    atmo_town,
    daily_means,
    eaqi_series,
    eaqi_town,
    who_daily,
)
from indicators.entities import Entity, atmo_entity, eaqi_entity, heat_entity, noise_entity, sensor_key
from indicators.heat import HeatDay, heat_day, heat_town, hourly_extremes, with_heat_waves
from indicators.noise import NoiseDay, noise_day
from indicators.thresholds import POLLUTANTS
from indicators.timebase import HOUR, day_span, hourly_energetic, hourly_means, local_day, span
from indicators.towns import Town

NOISE_ATTR = "LAeq"
TEMPERATURE_ATTR = "temperature"
MEASURED = (*POLLUTANTS, NOISE_ATTR, TEMPERATURE_ATTR)
Series = Mapping[str, Sequence[tuple[datetime, float]]]


@dataclass
class SensorResults:
    """A sensor's indicators by day (and hour for the European AQI)."""

    atmo: dict[date, AtmoDay] = field(default_factory=dict)
    who: dict[date, list[Exceedance]] = field(default_factory=dict)
    means: dict[date, dict[str, float]] = field(default_factory=dict)
    eaqi: dict[datetime, EaqiHour] = field(default_factory=dict)
    noise: dict[date, NoiseDay] = field(default_factory=dict)
    heat: dict[date, HeatDay] = field(default_factory=dict)

    def update(self, other: SensorResults) -> None:
        """Take `other`'s days over this one's."""
        for name in ("atmo", "who", "means", "eaqi", "noise", "heat"):
            getattr(self, name).update(getattr(other, name))
        self.heat = {d.day: d for d in with_heat_waves(sorted(self.heat.values(), key=lambda h: h.day))}


def compute_sensor(series: Series, days: Iterable[date], now: datetime | None = None) -> SensorResults:
    """Every indicator of `days` for one sensor; an indicator whose measures the sensor lacks is left out."""
    out = SensorResults()
    days = sorted(days)
    pollutants = {p: hourly_means(series[p]) for p in POLLUTANTS if series.get(p)}
    laeq = hourly_energetic(series[NOISE_ATTR]) if series.get(NOISE_ATTR) else None
    temperature = list(series.get(TEMPERATURE_ATTR) or [])
    t_means, t_extremes = hourly_means(temperature), hourly_extremes(temperature)
    for day in days:
        if now is not None and day_span(day)[0] > now:
            continue
        if pollutants and _any_in(pollutants.values(), *day_span(day)):
            out.atmo[day] = atmo_day(pollutants, day, now)
            out.who[day] = who_daily(pollutants, day, now)
            out.means[day] = daily_means(pollutants, day, now)
        if laeq is not None and _any_in([laeq], *span(day, 6, 6)):
            out.noise[day] = noise_day(laeq, day, now)
        if temperature and _any_in([t_means], *day_span(day)):
            out.heat[day] = heat_day(t_means, t_extremes, day, now)
    if pollutants and days:
        start, end = day_span(days[0])[0], day_span(days[-1])[1]
        out.eaqi = {h.hour: h for h in eaqi_series(pollutants, start, min(end, now) if now else end)}
    out.heat = {d.day: d for d in with_heat_waves(sorted(out.heat.values(), key=lambda h: h.day))}
    return out


def _any_in(series: Iterable[Mapping[datetime, float]], start: datetime, end: datetime) -> bool:
    """Whether any of the hourly series has a value in [start, end): days without any get no indicator."""
    return any(start <= h < end for values in series for h in values)


def _shown(result: AtmoDay | NoiseDay | HeatDay) -> bool:
    """Whether a day's result is worth an instance: a final day always is (even "indisponible"); a day under
    way only once it has a value (just after midnight no hour is complete: the entity keeps yesterday's)."""
    if not result.provisional:
        return True
    if isinstance(result, AtmoDay):
        return result.index > 0
    if isinstance(result, NoiseDay):
        return any(v is not None for v in (result.lday, result.levening, result.lnight))
    return any(v is not None for v in (result.tmin, result.tmean, result.tmax))


@dataclass(frozen=True)
class PlacedSensor:
    """A measuring entity, where it stands and the town it belongs to."""

    id: str
    type: str
    lon: float
    lat: float
    town: Town


def sensor_entities(sensor: PlacedSensor, results: SensorResults, days: Iterable[date],
                    now: datetime | None = None) -> list[Entity]:
    """The sensor's indicator entities for `days` (one instance per day)."""
    key, town = sensor_key(sensor.id), sensor.town
    where: dict[str, Any] = {"town_name": town.name, "town_code": town.insee, "location": (sensor.lon, sensor.lat),
                             "now": now}
    out: list[Entity] = []
    for day in sorted(days):
        if day in results.atmo and _shown(results.atmo[day]):
            out.append(atmo_entity(results.atmo[day], scope="sensor", key=key, sensor_id=sensor.id,
                                   who=results.who.get(day, []), means=results.means.get(day), **where))
        if day in results.noise and _shown(results.noise[day]):
            out.append(noise_entity(results.noise[day], key=key, sensor_id=sensor.id, **where))
        if day in results.heat and _shown(results.heat[day]):
            out.append(heat_entity(results.heat[day], scope="sensor", key=key, sensor_id=sensor.id, **where))
    return out


def town_entities(town: Town, sensors: Sequence[SensorResults], days: Iterable[date],
                  now: datetime | None = None) -> list[Entity]:
    """A town's daily ATMO and heat entities and hourly European AQI entities for `days`, from its sensors'
    (hours under way are left out of the European AQI)."""
    out: list[Entity] = []
    where: dict[str, Any] = {"town_name": town.name, "town_code": town.insee, "location": town.centre, "now": now}
    heat_days: list[HeatDay] = []
    all_days = sorted({d for s in sensors for d in s.heat} | set(days))
    for day in all_days:
        found = [s.heat[day] for s in sensors if day in s.heat]
        if found:
            heat_days.append(heat_town(day, found))
    heat = {h.day: h for h in with_heat_waves(heat_days)}
    wanted = set(days)
    for day in sorted(wanted):
        atmo = [s.atmo[day] for s in sensors if day in s.atmo]
        if atmo and _shown(atmo_town(day, atmo)):
            out.append(atmo_entity(atmo_town(day, atmo), scope="town", key=town.insee, **where))
        if day in heat and _shown(heat[day]):
            out.append(heat_entity(heat[day], scope="town", key=town.insee, **where))
    hourly = eaqi_town([[h for h in s.eaqi.values() if local_day(h.hour) in wanted
                         and (now is None or h.hour + HOUR <= now)] for s in sensors])
    out.extend(eaqi_entity(h, key=town.insee, town_name=town.name, location=town.centre) for h in hourly)
    return out


def days_between(first: date, last: date) -> list[date]:
    """The days from `first` to `last`, both included."""
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def merged(results: SensorResults | None, new: SensorResults) -> SensorResults:
    """`results` with `new`'s days over its own (a new object when `results` is None)."""
    if results is None:
        return replace(new)
    results.update(new)
    return results
