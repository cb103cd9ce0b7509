"""Heat: Tn/Tx windows, tropical nights at 20 °C, heat-wave days from 3-day means, towns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from indicators.heat import HeatDay, heat_day, heat_town, hourly_extremes, with_heat_waves
from indicators.timebase import hourly_means

DAY = date(2026, 7, 20)


def _utc(day: date, hour: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


def _samples(day: date, night_min: float, day_max: float) -> list[tuple[datetime, float]]:
    """Two samples an hour from 18 UTC the day before to 06 UTC the day after: cool at 04 UTC, hot at 13 UTC."""
    out = []
    for half in range(-12, 60):
        t = _utc(day, half / 2)
        value = (night_min + day_max) / 2
        if t.hour == 4 and t.date() == day:
            value = night_min
        if t.hour == 13 and t.date() == day:
            value = day_max
        out.append((t, value))
    return out


def _heat(day: date, night_min: float, day_max: float) -> HeatDay:
    samples = _samples(day, night_min, day_max)
    return heat_day(hourly_means(samples), hourly_extremes(samples), day)


def test_tropical_night_at_twenty_degrees_and_not_below() -> None:
    assert _heat(DAY, 20.0, 33.0).tropical_night is True
    below = _heat(DAY, 19.9, 33.0)
    assert below.tmin == 19.9 and below.tmax == 33.0 and below.tropical_night is False


def test_minimum_and_maximum_use_the_climatological_windows() -> None:
    samples = _samples(DAY, 22.0, 30.0)
    samples.append((_utc(DAY, 19.5), 15.0))  # 19:30 UTC on D: after Tn's window (ends 18 UTC), inside Tx's
    result = heat_day(hourly_means(samples), hourly_extremes(samples), DAY)
    assert result.tmin == 22.0
    samples.append((_utc(DAY, 17.5), 15.0))  # inside Tn's window
    assert heat_day(hourly_means(samples), hourly_extremes(samples), DAY).tmin == 15.0


def test_missing_data_gives_none() -> None:
    samples = [s for s in _samples(DAY, 20.0, 30.0) if s[0] < _utc(DAY, 3)]
    result = heat_day(hourly_means(samples), hourly_extremes(samples), DAY)
    assert result.tmin is None and result.tropical_night is None and result.tmax is None


def test_heat_wave_days_need_both_three_day_means() -> None:
    days = [HeatDay(DAY + timedelta(days=k), tmin, 28.0, tmax) for k, (tmin, tmax) in
            enumerate([(24.0, 35.0), (24.0, 35.0), (24.0, 35.0), (23.0, 36.0), (22.0, 40.0)])]
    flags = [d.heat_wave for d in with_heat_waves(days)]
    # day 2: means 24/35 (at both thresholds); day 3: 23.67/35.33 (Tn mean below); the first two lack 3 days
    assert flags == [None, None, True, False, False]


def test_town_means_of_sensors() -> None:
    town = heat_town(DAY, [HeatDay(DAY, 19.0, 25.0, 31.0), HeatDay(DAY, 21.0, 27.0, None)])
    assert (town.tmin, town.tmean, town.tmax, town.tropical_night) == (20.0, 26.0, 31.0, True)
