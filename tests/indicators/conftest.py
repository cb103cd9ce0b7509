"""Fixtures of the indicator tests: the shared threshold tables and hourly series built by hand."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest

from indicators.timebase import day_span, hours
from tests.conftest import REFERENCE, _reference

#: The shared tables name pollutants as printed; the project uses Smart Data Models names.
SDM_NAME = {"PM2.5": "pm25", "PM10": "pm10", "NO2": "no2", "O3": "o3", "SO2": "so2"}


def read_reference(name: str) -> list[dict[str, str]]:
    """Rows of ../shared/reference/<name>."""
    path = _reference(REFERENCE / name)
    with Path(path).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def flat_day() -> Callable[[date, float], dict[datetime, float]]:
    """Every hour of a local day at one value."""
    def make(day: date, value: float) -> dict[datetime, float]:
        return dict.fromkeys(hours(*day_span(day)), value)
    return make
