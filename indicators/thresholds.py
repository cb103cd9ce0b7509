"""The threshold tables of the indicators (the CSV files in `data/`, each with its source), loaded once.

    atmo_level("no2", 41.0)   -> 2      first level whose inclusive upper bound holds the value
    eaqi_level("pm25", 5.0)   -> 1
    ATMO_LEVELS[2].label_fr   -> "moyen"

Bounds are inclusive upper bounds: a concentration equal to a bound belongs to
the lower level, one just above it to the next (the tables' `min exclusive,
max inclusive` convention).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

#: Pollutants by their Smart Data Models attribute names, with their display names.
POLLUTANTS: dict[str, str] = {"pm25": "PM2.5", "pm10": "PM10", "no2": "NO2", "o3": "O3", "so2": "SO2"}


def rows(name: str) -> Iterator[dict[str, str]]:
    """The rows of `data/<name>`, comment lines (#) skipped."""
    with (DATA / name).open(encoding="utf-8") as f:
        yield from csv.DictReader(line for line in f if not line.startswith("#"))


@dataclass(frozen=True, slots=True)
class Level:
    """One class of an index: its number, labels and colour."""

    level: int
    label_fr: str
    label_en: str
    colour: str

    def label(self, lang: str) -> str:
        """The label in `lang` ("fr" or "en")."""
        return self.label_fr if lang == "fr" else self.label_en


@dataclass(frozen=True, slots=True)
class Scale:
    """The bands of one pollutant: inclusive upper bounds of levels 1..5 (level 6 is open-ended)."""

    pollutant: str
    statistic: str
    uppers: tuple[float, ...]

    def level(self, value: float) -> int:
        """The level (1-6) of a concentration."""
        for index, upper in enumerate(self.uppers, start=1):
            if value <= upper:
                return index
        return len(self.uppers) + 1


def _scales(name: str, statistic_column: str | None) -> dict[str, Scale]:
    bands: dict[str, list[tuple[int, float]]] = {}
    statistic: dict[str, str] = {}
    for row in rows(name):
        pollutant = row["pollutant"]
        statistic[pollutant] = row[statistic_column] if statistic_column else "hourly"
        if row["upper_inclusive_ugm3"]:
            bands.setdefault(pollutant, []).append((int(row["level"]), float(row["upper_inclusive_ugm3"])))
    return {p: Scale(p, statistic[p], tuple(u for _, u in sorted(b))) for p, b in bands.items()}


def _levels(name: str) -> dict[int, Level]:
    return {int(r["level"]): Level(int(r["level"]), r["label_fr"], r["label_en"], r["colour"]) for r in rows(name)}


ATMO_SCALES: dict[str, Scale] = _scales("atmo_2020.csv", "statistic")
ATMO_LEVELS: dict[int, Level] = _levels("atmo_levels.csv")
EAQI_SCALES: dict[str, Scale] = _scales("eaqi_2024.csv", None)
EAQI_LEVELS: dict[int, Level] = _levels("eaqi_levels.csv")


def atmo_level(pollutant: str, value: float) -> int:
    """ATMO sub-index (1-6) of the pollutant's daily statistic (µg/m³)."""
    return ATMO_SCALES[pollutant].level(value)


def eaqi_level(pollutant: str, value: float) -> int:
    """European AQI (2024) sub-index (1-6) of an hourly concentration (µg/m³)."""
    return EAQI_SCALES[pollutant].level(value)


@cache
def who_guidelines() -> dict[tuple[str, str], float]:
    """WHO 2021 AQG levels: (pollutant, averaging) -> µg/m³."""
    return {(r["pollutant"], r["averaging"]): float(r["aqg_ugm3"]) for r in rows("who_2021.csv")}


@cache
def noise_limits() -> dict[tuple[str, str], float]:
    """Noise reference values: (reference, indicator) -> dB(A)."""
    return {(r["reference"], r["indicator"]): float(r["limit_dba"]) for r in rows("noise_limits.csv")}


@dataclass(frozen=True, slots=True)
class NoisePeriod:
    """A period of the Lden in local time, with its penalty and weight."""

    name: str
    start_hour: int
    end_hour: int
    penalty_db: float
    weight_h: float


@cache
def noise_periods() -> tuple[NoisePeriod, ...]:
    """Day, evening, night, in that order."""
    return tuple(NoisePeriod(r["period"], int(r["start_hour"]), int(r["end_hour"]), float(r["penalty_db"]),
                             float(r["weight_h"])) for r in rows("noise_periods.csv"))


@cache
def heat_thresholds() -> dict[str, float]:
    """Tropical night and heat-wave thresholds (°C)."""
    return {r["name"]: float(r["value_cel"]) for r in rows("heat.csv")}
