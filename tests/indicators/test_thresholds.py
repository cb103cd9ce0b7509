"""The project's threshold tables against the shared reference tables, and both sides of every boundary."""

from __future__ import annotations

import pytest

from indicators.thresholds import (
    ATMO_LEVELS,
    ATMO_SCALES,
    EAQI_SCALES,
    atmo_level,
    eaqi_level,
    noise_limits,
    noise_periods,
    who_guidelines,
)
from tests.indicators.conftest import SDM_NAME, read_reference


def _bands(rows: list[dict[str, str]]) -> list[tuple[str, int, float | None, float | None, dict[str, str]]]:
    out = []
    for r in rows:
        lo = float(r["conc_min_exclusive_ugm3"]) if r["conc_min_exclusive_ugm3"] else None
        hi = float(r["conc_max_inclusive_ugm3"]) if r["conc_max_inclusive_ugm3"] else None
        out.append((SDM_NAME[r["pollutant"]], int(r["index_level"]), lo, hi, r))
    return out


def test_atmo_bands_match_the_shared_table_on_both_sides_of_each_bound() -> None:
    rows = read_reference("atmo_thresholds.csv")
    assert len(rows) == 30
    for pollutant, level, lo, hi, row in _bands(rows):
        if hi is not None:
            assert atmo_level(pollutant, hi) == level, row
            assert atmo_level(pollutant, hi + 0.1) == level + 1, row
        if lo is not None:
            assert atmo_level(pollutant, lo + 0.1) == level, row
            assert atmo_level(pollutant, lo) == level - 1, row
        assert ATMO_LEVELS[level].label_fr == row["label_fr"]
        assert ATMO_LEVELS[level].label_en == row["label_en"]
        statistic = "daily_mean" if row["statistic"] == "daily mean" else "daily_max_hourly"
        assert ATMO_SCALES[pollutant].statistic == statistic


def test_eaqi_2024_bands_match_the_shared_table() -> None:
    rows = [r for r in read_reference("eaqi_thresholds.csv") if r["version"] == "2024_revision"]
    assert len(rows) == 30
    for pollutant, level, lo, hi, row in _bands(rows):
        if hi is not None:
            assert eaqi_level(pollutant, hi) == level, row
            assert eaqi_level(pollutant, hi + 0.1) == level + 1, row
        if lo is not None:
            assert eaqi_level(pollutant, lo + 0.1) == level, row
    assert set(EAQI_SCALES) == set(SDM_NAME.values())


@pytest.mark.parametrize(("pollutant", "value", "level"), [
    ("no2", 0, 1), ("no2", 40, 1), ("no2", 41, 2), ("no2", 340, 5), ("no2", 341, 6), ("no2", 5000, 6),
    ("pm25", 10, 1), ("pm25", 10.05, 2), ("pm25", 25, 3), ("pm25", 25.1, 4), ("pm10", 50, 3), ("pm10", 50.5, 4),
    ("o3", 130, 3), ("o3", 131, 4), ("so2", 750, 5), ("so2", 751, 6),
])
def test_atmo_hand_worked_levels(pollutant: str, value: float, level: int) -> None:
    assert atmo_level(pollutant, value) == level


def test_who_levels_match_the_shared_guidelines() -> None:
    shared = {(r["pollutant"], r["averaging_time"]): float(r["value"])
              for r in read_reference("who_2021_guidelines.csv") if r["level"] == "AQG"}
    ours = who_guidelines()
    averaging = {"daily": "24-hour", "annual": "annual", "daily_max_8h": "8-hour (daily max)"}
    for (pollutant, avg), value in ours.items():
        name = next(k for k, v in SDM_NAME.items() if v == pollutant)
        assert shared[(name, averaging[avg])] == value


def test_noise_limits_and_periods_match_the_shared_table() -> None:
    rows = read_reference("noise_thresholds.csv")
    france = {r["indicator"]: float(r["value"]) for r in rows
              if r["scope"].startswith("France limit value") and r["noise_source"] == "road"}
    who = {r["indicator"]: float(r["value"]) for r in rows
           if r["scope"].startswith("WHO") and r["noise_source"] == "road traffic"}
    limits = noise_limits()
    assert limits[("france_road", "Lden")] == france["Lden"] and limits[("france_road", "Lnight")] == france["Lnight"]
    assert limits[("who_2018_road", "Lden")] == who["Lden"] and limits[("who_2018_road", "Lnight")] == who["Lnight"]
    periods = {r["indicator"]: r["value"] for r in rows if r["scope"] == "France" and r["item"].endswith("period")}
    for period, name in zip(noise_periods(), ("Lday", "Levening", "Lnight"), strict=True):
        assert periods[name] == f"{period.start_hour:02d}:00-{period.end_hour:02d}:00"
