"""Heat indicators per sensor and day: minimum, mean and maximum temperature, tropical nights, heat-wave days.

Tn and Tx follow Météo-France's climatological days: the minimum of day D
is taken from 18:00 UTC on D-1 to 18:00 UTC on D (the night before D), the
maximum from 06:00 UTC on D to 06:00 UTC on D+1; the mean is that of the local
calendar day's hourly means. Each needs the coverage rule of `timebase`
(75 % of the 24 hours). A tropical night is a Tn of 20 °C or more. A heat-wave
day is one where the 3-day means of Tn and Tx over D-2..D (the IBMn and IBMx
of the heat-wave warning system, on observed days) reach the Bouches-du-Rhône
thresholds (data/heat.csv). A town's values are the means of its sensors'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from indicators.thresholds import heat_thresholds
from indicators.timebase import Hourly, assessed, covered, day_span

Extremes = Mapping[datetime, tuple[float, float]]  # hour -> (min, max) of its samples


@dataclass(frozen=True, slots=True)
class HeatDay:
    """A day's temperatures (°C, None when data is insufficient) and heat flags (None when unknown)."""

    day: date
    tmin: float | None
    tmean: float | None
    tmax: float | None
    tropical_night: bool | None = None
    heat_wave: bool | None = None
    provisional: bool = False


def hourly_extremes(samples: Sequence[tuple[datetime, float]]) -> dict[datetime, tuple[float, float]]:
    """Per UTC hour, the minimum and maximum sample."""
    out: dict[datetime, tuple[float, float]] = {}
    for moment, value in samples:
        h = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        lo, hi = out.get(h, (value, value))
        out[h] = (min(lo, value), max(hi, value))
    return out


def _utc(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


def heat_day(means: Hourly, extremes: Extremes, day: date, now: datetime | None = None) -> HeatDay:
    """Tn, mean and Tx of day D, and whether its night was tropical (heat wave: see `with_heat_waves`)."""
    lows = {h: lo for h, (lo, _) in extremes.items()}
    highs = {h: hi for h, (_, hi) in extremes.items()}
    min_hours, run_min = assessed(_utc(day, -6), _utc(day, 18), now)
    max_hours, run_max = assessed(_utc(day, 6), _utc(day, 30), now)
    mean_hours, run_mean = assessed(*day_span(day), now)
    tn, tx, tm = covered(lows, min_hours), covered(highs, max_hours), covered(means, mean_hours)
    tmin = round(min(tn), 1) if tn is not None else None
    tropical = None if tmin is None else tmin >= heat_thresholds()["tropical_night_min"]
    return HeatDay(day, tmin, round(sum(tm) / len(tm), 1) if tm is not None else None,
                   round(max(tx), 1) if tx is not None else None, tropical, None, run_min or run_max or run_mean)


def with_heat_waves(days: Sequence[HeatDay]) -> list[HeatDay]:
    """The days with `heat_wave` set from the 3-day means of Tn and Tx ending on each day (None when unknown)."""
    limits = heat_thresholds()
    by_day = {d.day: d for d in days}
    out = []
    for d in days:
        window = [by_day.get(d.day - timedelta(days=k)) for k in range(3)]
        if any(w is None or w.tmin is None or w.tmax is None for w in window):
            out.append(replace(d, heat_wave=None))
            continue
        ibm_min = sum(w.tmin for w in window if w and w.tmin is not None) / 3
        ibm_max = sum(w.tmax for w in window if w and w.tmax is not None) / 3
        out.append(replace(d, heat_wave=ibm_min >= limits["heat_wave_ibm_min"] and ibm_max >= limits["heat_wave_ibm_max"]))
    return out


def heat_town(day: date, sensors: Sequence[HeatDay]) -> HeatDay:
    """A town's heat day: the mean of its sensors' Tn, mean and Tx (those known)."""
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(sum(known) / len(known), 1) if known else None
    tmin = mean([s.tmin for s in sensors])
    tropical = None if tmin is None else tmin >= heat_thresholds()["tropical_night_min"]
    return HeatDay(day, tmin, mean([s.tmean for s in sensors]), mean([s.tmax for s in sensors]), tropical, None,
                   any(s.provisional for s in sensors))
