"""Air-quality indicators: the French ATMO index, the European AQI (2024) and WHO 2021 guideline exceedances.

Inputs are hourly values per pollutant (`timebase.hourly_means` of a sensor's
measures, µg/m³), keyed by UTC hour start; pollutants by their Smart Data
Models names (pm25, pm10, no2, o3, so2).

ATMO (arrêté du 10 juillet 2020): a sub-index per pollutant from its daily
statistic (mean of the day's hourly values for particles, maximum hourly
value for gases), the index is the worst sub-index. A sub-index needs the
coverage rule of `timebase` (75 % of the day's hours); the index is 0,
"indisponible", when no pollutant has one. It says which pollutants it was
computed from, so an index from NO2 alone reads as such.

A town's index takes, per pollutant, the worst statistic of its sensors that
meet the coverage rule (the arrêté computes the index on the town's worst
modelled concentrations; with stations, the worst station stands for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from indicators.thresholds import ATMO_SCALES, EAQI_SCALES, who_guidelines
from indicators.timebase import HOUR, Hourly, assessed, covered, day_span, hours

ByPollutant = Mapping[str, Hourly]


@dataclass(frozen=True, slots=True)
class AtmoDay:
    """The ATMO index of one day (0 = indisponible) with its sub-indices and daily statistics."""

    day: date
    index: int
    sub_indices: dict[str, int] = field(default_factory=dict)
    statistics: dict[str, float] = field(default_factory=dict)
    provisional: bool = False

    @property
    def responsible(self) -> list[str]:
        """The pollutants whose sub-index is the index."""
        return [p for p, level in self.sub_indices.items() if level == self.index and self.index > 0]


def atmo_statistic(pollutant: str, values: list[float]) -> float:
    """The daily statistic the arrêté names for the pollutant: mean (particles) or maximum hourly value (gases)."""
    if ATMO_SCALES[pollutant].statistic == "daily_mean":
        return sum(values) / len(values)
    return max(values)


def atmo_day(hourly: ByPollutant, day: date, now: datetime | None = None) -> AtmoDay:
    """ATMO index of a local day from hourly values; `now` inside the day makes it provisional (hours elapsed)."""
    start, end = day_span(day)
    span_hours, provisional = assessed(start, end, now)
    stats: dict[str, float] = {}
    for pollutant in ATMO_SCALES:
        values = covered(hourly.get(pollutant, {}), span_hours)
        if values is not None:
            stats[pollutant] = round(atmo_statistic(pollutant, values), 1)
    return _atmo_from(day, stats, provisional)


def _atmo_from(day: date, stats: Mapping[str, float], provisional: bool) -> AtmoDay:
    subs = {p: ATMO_SCALES[p].level(v) for p, v in stats.items()}
    return AtmoDay(day, max(subs.values(), default=0), subs, dict(stats), provisional)


def atmo_town(day: date, sensors: Sequence[AtmoDay]) -> AtmoDay:
    """A town's ATMO index of the day: per pollutant, the worst statistic of its sensors."""
    stats: dict[str, float] = {}
    for sensor in sensors:
        for pollutant, value in sensor.statistics.items():
            stats[pollutant] = max(value, stats.get(pollutant, value))
    return _atmo_from(day, stats, any(s.provisional for s in sensors))


@dataclass(frozen=True, slots=True)
class EaqiHour:
    """The European AQI of one hour: the worst sub-index of the pollutants measured that hour."""

    hour: datetime
    index: int
    sub_indices: dict[str, int]


def eaqi_hour(hour: datetime, values: Mapping[str, float]) -> EaqiHour | None:
    """EAQI (2024 revision) of one hour's concentrations; None when no pollutant of the index is there."""
    subs = {p: EAQI_SCALES[p].level(v) for p, v in values.items() if p in EAQI_SCALES}
    return EaqiHour(hour, max(subs.values()), subs) if subs else None


def eaqi_series(hourly: ByPollutant, start: datetime, end: datetime) -> list[EaqiHour]:
    """EAQI for every hour of [start, end) that has at least one pollutant of the index."""
    out = []
    for h in hours(start, end):
        found = eaqi_hour(h, {p: series[h] for p, series in hourly.items() if h in series})
        if found is not None:
            out.append(found)
    return out


def eaqi_town(sensors: Sequence[Sequence[EaqiHour]]) -> list[EaqiHour]:
    """A town's hourly EAQI: per hour and pollutant, the worst sub-index of its sensors."""
    merged: dict[datetime, dict[str, int]] = {}
    for series in sensors:
        for item in series:
            slot = merged.setdefault(item.hour, {})
            for p, level in item.sub_indices.items():
                slot[p] = max(level, slot.get(p, level))
    return [EaqiHour(h, max(subs.values()), subs) for h, subs in sorted(merged.items())]


@dataclass(frozen=True, slots=True)
class Exceedance:
    """A statistic above a WHO 2021 guideline level."""

    pollutant: str
    averaging: str
    value: float
    limit: float


def daily_means(hourly: ByPollutant, day: date, now: datetime | None = None) -> dict[str, float]:
    """Each pollutant's mean of the local day, when the coverage rule is met."""
    start, end = day_span(day)
    span_hours, _ = assessed(start, end, now)
    out = {}
    for pollutant, series in hourly.items():
        values = covered(series, span_hours)
        if values is not None:
            out[pollutant] = sum(values) / len(values)
    return out


def max_8h_mean(series: Hourly, day: date) -> float | None:
    """Maximum 8-hour running mean of the day, each window counted on the day it ends (first: 17:00 the day
    before to 01:00), a window needing 6 of its 8 hours (Directive 2008/50/EC annex VII)."""
    start, end = day_span(day)
    best: float | None = None
    for window_end in hours(start + HOUR, end + HOUR):
        values = covered(series, hours(window_end - timedelta(hours=8), window_end))
        if values is not None:
            mean = sum(values) / len(values)
            best = mean if best is None else max(best, mean)
    return best


def who_daily(hourly: ByPollutant, day: date, now: datetime | None = None) -> list[Exceedance]:
    """The WHO 2021 short-term guideline levels exceeded on a day (strictly above)."""
    guidelines = who_guidelines()
    out = []
    for pollutant, mean in sorted(daily_means(hourly, day, now).items()):
        limit = guidelines.get((pollutant, "daily"))
        if limit is not None and mean > limit:
            out.append(Exceedance(pollutant, "daily", round(mean, 1), limit))
    if "o3" in hourly:
        limit = guidelines[("o3", "daily_max_8h")]
        peak = max_8h_mean(hourly["o3"], day)
        if peak is not None and peak > limit:
            out.append(Exceedance("o3", "daily_max_8h", round(peak, 1), limit))
    return out


def who_annual(daily: Mapping[str, Sequence[float]]) -> list[Exceedance]:
    """WHO 2021 annual guideline levels exceeded by the mean of the daily means of a period."""
    guidelines = who_guidelines()
    out = []
    for pollutant, values in sorted(daily.items()):
        limit = guidelines.get((pollutant, "annual"))
        if limit is not None and values:
            mean = sum(values) / len(values)
            if mean > limit:
                out.append(Exceedance(pollutant, "annual", round(mean, 1), limit))
    return out
