"""broker/quantumleap/settings.py: METROPOLE_HISTORY_* through pydantic-settings, as before."""

from __future__ import annotations

import pytest

from broker.quantumleap.settings import QuantumLeapSettings

# (variable, raw value, expected settings)
PARSED: list[tuple[str, str, QuantumLeapSettings]] = [
    ("METROPOLE_HISTORY_SHAPES", "1.0", QuantumLeapSettings("1.0")),
    ("METROPOLE_HISTORY_SHAPES", " master ", QuantumLeapSettings("master")),
    ("METROPOLE_HISTORY_SHAPES", "", QuantumLeapSettings("1.0")),
    ("METROPOLE_HISTORY_SHAPES", "  ", QuantumLeapSettings("1.0")),
    ("METROPOLE_HISTORY_BROKER_URL", "http://orion:1026", QuantumLeapSettings("1.0", "http://orion:1026")),
    ("METROPOLE_HISTORY_BROKER_URL", "", QuantumLeapSettings("1.0", None)),
]

REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_HISTORY_SHAPES", "2.0", "METROPOLE_HISTORY_SHAPES='2.0' must be 1.0 or master"),
    ("METROPOLE_HISTORY_SHAPES", "Master", "METROPOLE_HISTORY_SHAPES='Master' must be 1.0 or master"),
]


@pytest.mark.parametrize(("variable", "raw", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, expected: QuantumLeapSettings) -> None:
    monkeypatch.setenv(variable, raw)
    assert QuantumLeapSettings.from_env() == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        QuantumLeapSettings.from_env()
    assert str(caught.value) == message


def test_nothing_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METROPOLE_HISTORY_SHAPES", raising=False)
    monkeypatch.delenv("METROPOLE_HISTORY_BROKER_URL", raising=False)
    assert QuantumLeapSettings.from_env() == QuantumLeapSettings()
