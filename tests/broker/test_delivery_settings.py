"""broker/subscriptions/delivery.py DeliverySettings: the METROPOLE_NOTIFY_* variables, parsed as before."""

from __future__ import annotations

import os
from typing import Any

import pytest

from broker.subscriptions.delivery import DeliverySettings

# (variable, raw value, field, expected value)
PARSED: list[tuple[str, str, str, Any]] = [
    ("METROPOLE_NOTIFY_RETRY_INITIAL", "0.1", "retry_initial", 0.1),
    ("METROPOLE_NOTIFY_RETRY_FACTOR", "3", "retry_factor", 3.0),
    ("METROPOLE_NOTIFY_RETRY_MAX", " 60 ", "retry_max", 60.0),
    ("METROPOLE_NOTIFY_TIMEOUT", "2.5", "timeout", 2.5),
    ("METROPOLE_NOTIFY_MAX_BATCH", "10", "max_batch", 10),
    ("METROPOLE_NOTIFY_MAX_BATCH", "0", "max_batch", 1),  # below one is one, never an error
    ("METROPOLE_NOTIFY_MAX_BATCH", "-5", "max_batch", 1),
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_NOTIFY_RETRY_INITIAL", "fast", "METROPOLE_NOTIFY_RETRY_INITIAL='fast' is not a number"),
    ("METROPOLE_NOTIFY_RETRY_FACTOR", "", "METROPOLE_NOTIFY_RETRY_FACTOR='' is not a number"),
    ("METROPOLE_NOTIFY_RETRY_MAX", "30s", "METROPOLE_NOTIFY_RETRY_MAX='30s' is not a number"),
    ("METROPOLE_NOTIFY_TIMEOUT", "ten", "METROPOLE_NOTIFY_TIMEOUT='ten' is not a number"),
    ("METROPOLE_NOTIFY_MAX_BATCH", "50.0", "METROPOLE_NOTIFY_MAX_BATCH='50.0' is not a whole number"),
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("METROPOLE_NOTIFY_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(DeliverySettings.from_env(), field) == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        DeliverySettings.from_env()
    assert str(caught.value) == message


def test_nothing_set_is_the_defaults() -> None:
    assert DeliverySettings.from_env() == DeliverySettings()
