"""indicators/service.py IndicatorSettings: the METROPOLE_INDICATORS_* variables, parsed as before pydantic-settings."""

from __future__ import annotations

import os
from typing import Any

import pytest

from indicators.service import IndicatorSettings

# (variable, raw value, field, expected value)
PARSED: list[tuple[str, str, str, Any]] = [
    ("METROPOLE_INDICATORS_BROKER_URL", "http://orion:1026", "broker_url", "http://orion:1026"),
    ("METROPOLE_INDICATORS_BROKER_URL", "", "broker_url", ""),  # set but empty: the empty text, as before
    ("METROPOLE_INDICATORS_TENANT", "aix", "tenant", "aix"),
    ("METROPOLE_INDICATORS_CONTEXT", "http://ctx/a.jsonld", "context", "http://ctx/a.jsonld"),
    ("METROPOLE_INDICATORS_INTERVAL", "5", "interval", 5.0),
    ("METROPOLE_INDICATORS_INTERVAL", " 0.5 ", "interval", 0.5),
    ("METROPOLE_INDICATORS_LOOKBACK_DAYS", "7", "lookback_days", 7),
    ("METROPOLE_INDICATORS_LOOKBACK_DAYS", "1_0", "lookback_days", 10),
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_INDICATORS_INTERVAL", "1m", "METROPOLE_INDICATORS_INTERVAL='1m' is not a number"),
    ("METROPOLE_INDICATORS_INTERVAL", "", "METROPOLE_INDICATORS_INTERVAL='' is not a number"),
    ("METROPOLE_INDICATORS_LOOKBACK_DAYS", "7.0", "METROPOLE_INDICATORS_LOOKBACK_DAYS='7.0' is not a whole number"),
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("METROPOLE_INDICATORS_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(IndicatorSettings.from_env(), field) == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        IndicatorSettings.from_env()
    assert str(caught.value) == message


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --indicators-tenant` and the interval `run` computes win; None leaves the variable's value."""
    monkeypatch.setenv("METROPOLE_INDICATORS_TENANT", "aix")
    monkeypatch.setenv("METROPOLE_INDICATORS_INTERVAL", "30")
    s = IndicatorSettings.from_env(tenant="marseille", interval=None)
    assert (s.tenant, s.interval) == ("marseille", 30.0)


def test_nothing_set_is_the_defaults() -> None:
    assert IndicatorSettings.from_env() == IndicatorSettings()
