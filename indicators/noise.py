"""Noise indicators per sensor and day: Lday, Levening, Lnight, Lden with the French periods, and exceedances.

Periods (data/noise_periods.csv) in local time: day 06-18, evening 18-22,
night 22-06; the Lden of day D covers 06:00 on D to 06:00 on D+1, so a noisy
Saturday night shows in Saturday's Lnight. A period's level is the energetic
mean of its hourly levels, under the coverage rule of `timebase` (75 % of the
period's hours; a night spanning a clock change has 7 or 9). The Lden weighs
the periods 12/4/8 hours with +5 and +10 dB penalties, as Directive
2002/49/EC Annex I writes it; it needs all three periods.

Exceedances compare Lden and Lnight with the French road limit values and the
WHO 2018 road-traffic recommendations (data/noise_limits.csv), strictly above.
Those references are annual; per day the counts are indicative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

from indicators.thresholds import noise_limits, noise_periods
from indicators.timebase import Hourly, assessed, covered, energetic_mean, span


@dataclass(frozen=True, slots=True)
class NoiseDay:
    """A day's period levels (dB(A), None when data is insufficient), Lden and exceedances."""

    day: date
    lday: float | None
    levening: float | None
    lnight: float | None
    lden: float | None
    exceedances: dict[str, bool] = field(default_factory=dict)
    provisional: bool = False


def lden(lday: float, levening: float, lnight: float) -> float:
    """Lden from the three period levels (weights and penalties of data/noise_periods.csv)."""
    day, evening, night = noise_periods()
    energy = (day.weight_h * 10 ** ((lday + day.penalty_db) / 10)
              + evening.weight_h * 10 ** ((levening + evening.penalty_db) / 10)
              + night.weight_h * 10 ** ((lnight + night.penalty_db) / 10))
    return 10 * math.log10(energy / (day.weight_h + evening.weight_h + night.weight_h))


def exceedances(lden_value: float | None, lnight_value: float | None) -> dict[str, bool]:
    """`<reference>:<indicator>` -> whether the level is strictly above the reference value."""
    values = {"Lden": lden_value, "Lnight": lnight_value}
    return {f"{ref}:{ind}": level > limit
            for (ref, ind), limit in noise_limits().items() if (level := values.get(ind)) is not None}


def noise_day(hourly: Hourly, day: date, now: datetime | None = None) -> NoiseDay:
    """The noise indicators of day D (06:00 D to 06:00 D+1 local) from hourly LAeq."""
    levels: dict[str, float | None] = {}
    provisional = False
    for period in noise_periods():
        start, end = span(day, period.start_hour, period.end_hour)
        span_hours, running = assessed(start, end, now)
        provisional = provisional or running
        values = covered(hourly, span_hours)
        levels[period.name] = round(energetic_mean(values), 1) if values is not None else None
    d, e, n = levels["day"], levels["evening"], levels["night"]
    total = round(lden(d, e, n), 1) if d is not None and e is not None and n is not None else None
    return NoiseDay(day, d, e, n, total, exceedances(total, n), provisional)
