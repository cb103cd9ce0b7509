"""dashboard/app.py DashboardSettings: the METROPOLE_DASHBOARD_* variables, read through pydantic-settings as before."""

from __future__ import annotations

import os

import pytest

from dashboard.app import DashboardSettings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("METROPOLE_DASHBOARD_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), [
    ("METROPOLE_DASHBOARD_BROKER_URL", "http://orion:1026", "broker_url", "http://orion:1026"),
    ("METROPOLE_DASHBOARD_BROKER_URL", "", "broker_url", ""),  # set but empty: the empty text, as before
    ("METROPOLE_DASHBOARD_TENANT", "aix", "tenant", "aix"),
])
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: str) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(DashboardSettings.from_env(), field) == expected


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_DASHBOARD_TENANT", "aix")
    assert DashboardSettings.from_env(tenant="marseille").tenant == "marseille"
    assert DashboardSettings.from_env(tenant=None).tenant == "aix"


def test_nothing_set_is_the_defaults() -> None:
    assert DashboardSettings.from_env() == DashboardSettings()
