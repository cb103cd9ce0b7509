"""ATMO, European AQI and WHO 2021 computations on hand-worked hourly series, boundaries on both sides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from indicators.air import atmo_day, atmo_town, eaqi_hour, eaqi_series, eaqi_town, max_8h_mean, who_annual, who_daily
from indicators.timebase import day_span, hours, local_at

DAY = date(2026, 7, 14)
Flat = Callable[[date, float], dict[datetime, float]]


def test_particles_use_the_daily_mean_and_gases_the_daily_maximum(flat_day: Flat) -> None:
    pm10 = flat_day(DAY, 10.0)
    no2 = flat_day(DAY, 10.0)
    peak = local_at(DAY, 8)
    pm10[peak] = 250.0  # one hour at 250: the mean rises by 240/24 = 10 -> 20.0, still "bon" (<= 20)
    no2[peak] = 95.0  # the hourly maximum counts for gases: 95 -> "dégradé" (90 < x <= 120)
    result = atmo_day({"pm10": pm10, "no2": no2}, DAY)
    assert result.statistics == {"pm10": 20.0, "no2": 95.0}
    assert result.sub_indices == {"pm10": 1, "no2": 3}
    assert result.index == 3 and result.responsible == ["no2"]
    pm10[local_at(DAY, 9)] = 12.4  # mean 20.1: just above the bound -> "moyen"
    assert atmo_day({"pm10": pm10}, DAY).sub_indices == {"pm10": 2}


def test_bounds_are_inclusive_on_the_lower_class(flat_day: Flat) -> None:
    for value, level in ((40.0, 1), (40.1, 2), (90.0, 2), (90.1, 3)):
        assert atmo_day({"no2": flat_day(DAY, value)}, DAY).index == level


def test_eighteen_valid_hours_of_twenty_four_give_an_index_seventeen_do_not(flat_day: Flat) -> None:
    series = flat_day(DAY, 30.0)
    for h in hours(*day_span(DAY))[:6]:
        del series[h]
    assert atmo_day({"no2": series}, DAY).index == 1  # 18 hours
    del series[hours(*day_span(DAY))[6]]
    unavailable = atmo_day({"no2": series}, DAY)  # 17 hours
    assert unavailable.index == 0 and unavailable.sub_indices == {}


def test_coverage_counts_the_hours_of_a_dst_day(flat_day: Flat) -> None:
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    assert len(flat_day(spring, 1.0)) == 23 and len(flat_day(autumn, 1.0)) == 25
    short = flat_day(spring, 30.0)
    for h in list(short)[:5]:
        del short[h]
    assert atmo_day({"no2": short}, spring).index == 1  # 18 of 23 (>= 17.25)
    long = flat_day(autumn, 30.0)
    for h in list(long)[:6]:
        del long[h]
    assert atmo_day({"no2": long}, autumn).index == 1  # 19 of 25 (>= 18.75)
    del long[next(iter(long))]
    assert atmo_day({"no2": long}, autumn).index == 0  # 18 of 25


def test_today_is_assessed_on_the_hours_elapsed_and_marked_provisional(flat_day: Flat) -> None:
    now = local_at(DAY, 10) + timedelta(minutes=20)
    morning = {h: 50.0 for h in hours(local_at(DAY, 0), local_at(DAY, 10))}
    result = atmo_day({"pm25": morning}, DAY, now=now)
    assert result.provisional and result.index == 4  # 50 -> "mauvais" (25 < x <= 50)
    assert not atmo_day({"pm25": flat_day(DAY, 50.0)}, DAY).provisional


def test_a_town_takes_the_worst_statistic_of_its_sensors(flat_day: Flat) -> None:
    a = atmo_day({"no2": flat_day(DAY, 100.0), "pm25": flat_day(DAY, 5.0)}, DAY)
    b = atmo_day({"pm25": flat_day(DAY, 22.0)}, DAY)
    town = atmo_town(DAY, [a, b])
    assert town.statistics == {"no2": 100.0, "pm25": 22.0}
    assert town.sub_indices == {"no2": 3, "pm25": 3} and town.index == 3
    assert atmo_town(DAY, []).index == 0


def test_eaqi_hour_is_the_worst_sub_index() -> None:
    h = local_at(DAY, 12)
    result = eaqi_hour(h, {"pm25": 15.0, "no2": 25.1, "o3": 60.0})
    assert result is not None and result.sub_indices == {"pm25": 2, "no2": 3, "o3": 1} and result.index == 3
    assert eaqi_hour(h, {"co": 3.0}) is None
    series = eaqi_series({"so2": {h: 275.0, h + timedelta(hours=1): 275.5}}, h, h + timedelta(hours=3))
    assert [x.index for x in series] == [5, 6]
    town = eaqi_town([series, [x for x in eaqi_series({"pm10": {h: 196.0}}, h, h + timedelta(hours=1))]])
    assert [(x.index, x.sub_indices) for x in town] == [(5, {"so2": 5, "pm10": 5}), (6, {"so2": 6})]


def test_who_daily_exceedances_are_strictly_above_the_guideline(flat_day: Flat) -> None:
    assert who_daily({"pm25": flat_day(DAY, 15.0)}, DAY) == []
    over = who_daily({"pm25": flat_day(DAY, 15.1), "no2": flat_day(DAY, 25.5), "so2": flat_day(DAY, 40.0)}, DAY)
    assert [(e.pollutant, e.averaging, e.value, e.limit) for e in over] == [
        ("no2", "daily", 25.5, 25.0), ("pm25", "daily", 15.1, 15.0)]


def test_ozone_uses_the_maximum_eight_hour_mean_ending_in_the_day(flat_day: Flat) -> None:
    o3 = flat_day(DAY, 80.0)
    for h in hours(local_at(DAY, 12), local_at(DAY, 20)):
        o3[h] = 100.0  # eight hours at 100: the best window's mean is exactly 100, not above
    assert max_8h_mean(o3, DAY) == 100.0 and who_daily({"o3": o3}, DAY) == []
    o3[local_at(DAY, 15)] = 108.0  # window mean 101
    assert [(e.averaging, e.value) for e in who_daily({"o3": o3}, DAY)] == [("daily_max_8h", 101.0)]
    sparse = {h: 120.0 for h in hours(local_at(DAY, 12), local_at(DAY, 17))}  # 5 hours: no window has 6 of 8
    assert max_8h_mean(sparse, DAY) is None
    sparse[local_at(DAY, 17)] = 120.0
    assert max_8h_mean(sparse, DAY) == 120.0


def test_who_annual_means() -> None:
    assert who_annual({"no2": [10.0, 10.0]}) == []
    over = who_annual({"no2": [9.0, 11.2], "pm25": [4.0, 6.2], "o3": [200.0]})
    assert [(e.pollutant, e.value) for e in over] == [("no2", 10.1), ("pm25", 5.1)]
