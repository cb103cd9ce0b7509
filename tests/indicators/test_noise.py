"""Lday/Levening/Lnight/Lden with the French periods, energetic averaging, DST nights, exceedances."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pytest

from indicators.noise import lden, noise_day
from indicators.timebase import energetic_mean, hourly_energetic, hours, local_at, span

DAY = date(2026, 6, 13)  # a Saturday


def _periods(day: date, d: float, e: float, n: float) -> dict[datetime, float]:
    out = dict.fromkeys(hours(*span(day, 6, 18)), d)
    out.update(dict.fromkeys(hours(*span(day, 18, 22)), e))
    out.update(dict.fromkeys(hours(*span(day, 22, 6)), n))
    return out


def test_energetic_mean_is_not_the_arithmetic_mean() -> None:
    assert energetic_mean([60.0, 60.0]) == pytest.approx(60.0)
    assert energetic_mean([50.0, 70.0]) == pytest.approx(10 * math.log10((1e5 + 1e7) / 2))  # 67.03
    assert energetic_mean([50.0, 70.0]) == pytest.approx(67.03, abs=0.01)
    samples = [(local_at(DAY, 8), 50.0), (local_at(DAY, 8) + timedelta(minutes=30), 70.0)]
    assert list(hourly_energetic(samples).values()) == [pytest.approx(67.03, abs=0.01)]


def test_lden_hand_worked() -> None:
    # 60/60/60 dB: (12*10^6 + 4*10^6.5 + 8*10^7) / 24 = 4.3604e6 -> 66.40 dB (a flat level L gives L + 6.40)
    assert lden(60, 60, 60) == pytest.approx(10 * math.log10((12e6 + 4 * 10**6.5 + 8e7) / 24))
    assert lden(60, 60, 60) == pytest.approx(66.40, abs=0.01)
    # 70/65/55: (12*10^7 + 4*10^7 + 8*10^6.5) / 24 = 7.7208e6 -> 68.88 dB
    assert lden(70, 65, 55) == pytest.approx(68.88, abs=0.01)


def test_periods_follow_local_time_and_the_night_runs_into_the_next_day() -> None:
    result = noise_day(_periods(DAY, 65.0, 62.0, 58.0), DAY)
    assert (result.lday, result.levening, result.lnight) == (65.0, 62.0, 58.0)
    assert result.lden == round(lden(65, 62, 58), 1)
    day_start, night_end = span(DAY, 6, 18)[0], span(DAY, 22, 6)[1]
    assert day_start.hour == 4 and night_end == local_at(DAY + timedelta(days=1), 6)  # CEST: UTC+2


@pytest.mark.parametrize(("night_day", "hours_in_night"), [(date(2026, 3, 28), 7), (date(2026, 10, 24), 9)])
def test_nights_over_a_clock_change(night_day: date, hours_in_night: int) -> None:
    night = hours(*span(night_day, 22, 6))
    assert len(night) == hours_in_night
    levels = _periods(night_day, 60.0, 60.0, 50.0)
    assert noise_day(levels, night_day).lnight == 50.0
    keep = math.ceil(0.75 * hours_in_night)
    for h in night[keep:]:
        del levels[h]
    assert noise_day(levels, night_day).lnight == 50.0
    del levels[night[0]]
    result = noise_day(levels, night_day)
    assert result.lnight is None and result.lden is None and result.lday == 60.0


def test_exceedances_of_french_limits_and_who_recommendations_are_strict() -> None:
    at = noise_day(_periods(DAY, 45.0, 45.0, 45.0), DAY)
    assert at.lnight == 45.0 and at.exceedances["who_2018_road:Lnight"] is False
    above = noise_day(_periods(DAY, 45.0, 45.0, 45.1), DAY)
    assert above.exceedances["who_2018_road:Lnight"] is True
    loud = noise_day(_periods(DAY, 62.0, 62.0, 62.0), DAY)
    assert loud.exceedances["france_road:Lnight"] is False
    assert noise_day(_periods(DAY, 62.0, 62.0, 62.1), DAY).exceedances["france_road:Lnight"] is True
    # Lden 68 is the French road limit; a flat 61.6 gives 67.995, shown and compared as 68.0; 61.7 gives 68.1
    at_limit = noise_day(_periods(DAY, 61.6, 61.6, 61.6), DAY)
    assert at_limit.lden == 68.0 and at_limit.exceedances["france_road:Lden"] is False
    over = noise_day(_periods(DAY, 61.7, 61.7, 61.7), DAY)
    assert over.lden == 68.1 and over.exceedances["france_road:Lden"] is True
