"""FastAPI's OpenTelemetry hooks are off unless the process set OpenTelemetry up (issue 16, patch17).

FastAPI asks OpenTelemetry for its three global providers on every request; the broker, whose own
metrics are Prometheus, turns that off when none is configured as the app is made, and keeps
FastAPI's defaults when one is, or when FASTAPI_OTEL_AUTO_CONFIGURE asks FastAPI to make them.
"""

from __future__ import annotations

import pytest

from broker.app import create_app, fastapi_telemetry, otel_configured
from broker.settings import BrokerSettings


def test_without_opentelemetry_fastapi_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert not otel_configured()
    app = create_app(BrokerSettings())
    assert app._native_telemetry.enabled() is False
    assert (app._telemetry["tracing"], app._telemetry["metrics"], app._telemetry["logs"]) == (False, False, False)


def test_auto_configure_keeps_fastapi_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert otel_configured()
    assert fastapi_telemetry() == {}
    app = create_app(BrokerSettings())
    assert (app._telemetry["tracing"], app._telemetry["metrics"], app._telemetry["logs"]) == (True, True, True)


def test_the_history_port_and_the_v2_mount_have_it_off_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI
    from starlette.routing import Mount

    from metropole.cli import _history_server

    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    broker_app = create_app(BrokerSettings())
    history_app = _history_server("127.0.0.1", 0, broker_app).config.app  # the app port 8668 serves
    mounted = next(r.app for r in broker_app.routes if isinstance(r, Mount) and r.path == "/v2")
    for app in (history_app, mounted):
        assert isinstance(app, FastAPI)
        assert app._native_telemetry.enabled() is False
        assert (app._telemetry["tracing"], app._telemetry["metrics"], app._telemetry["logs"]) == (False, False, False)
