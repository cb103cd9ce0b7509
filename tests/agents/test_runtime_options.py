"""agents/runtime.py RuntimeOptions: every METROPOLE_AGENT_* transport and delivery variable, parsed as before."""

from __future__ import annotations

import os
from typing import Any

import pytest

from agents.runtime import RuntimeOptions

# (variable, raw value, field, expected value)
PARSED: list[tuple[str, str, str, Any]] = [
    ("METROPOLE_AGENT_MQTT", "External", "mqtt", "external"),
    ("METROPOLE_AGENT_MQTT", "OFF", "mqtt", "off"),
    ("METROPOLE_AGENT_MQTT_PROTOCOL", "4", "mqtt_protocol", 4),
    ("METROPOLE_AGENT_MQTT_CLIENT_ID", "agent-1", "mqtt_client_id", "agent-1"),
    ("METROPOLE_AGENT_MQTT_SHARE_GROUP", "agents", "mqtt_share_group", "agents"),
    ("METROPOLE_AGENT_MQTT_SESSION_EXPIRY", "3600", "mqtt_session_expiry", 3600),
    ("METROPOLE_AGENT_MQTT_USERNAME", "agent", "mqtt_username", "agent"),
    ("METROPOLE_AGENT_MQTT_USERNAME", "", "mqtt_username", None),  # empty: no credentials
    ("METROPOLE_AGENT_MQTT_PASSWORD", "pw", "mqtt_password", "pw"),
    ("METROPOLE_AGENT_MQTT_PASSWORD", "", "mqtt_password", None),
    ("METROPOLE_AGENT_BATCH_MODE", "MERGE", "batch_mode", "merge"),
    ("METROPOLE_AGENT_BATCH_SIZE", "2000", "batch_size", 2000),
    ("METROPOLE_AGENT_DELIVERY_WORKERS", "8", "delivery_workers", 8),
    ("METROPOLE_AGENT_REQUESTS_IN_FLIGHT", "1", "requests_in_flight", 1),
    ("METROPOLE_AGENT_BATCH_REPEATS", "1", "batch_repeats", 1),
    ("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL", "0", "device_status_interval", 0.0),
    ("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL", "2.5", "device_status_interval", 2.5),
    ("METROPOLE_AGENT_OUTBOX_SYNC", "normal", "outbox_sync", "NORMAL"),
    ("METROPOLE_AGENT_BROKER_TIMEOUT", "30", "broker_timeout", 30.0),
    ("METROPOLE_AGENT_COMMANDS", "Registration", "commands", "registration"),
    ("METROPOLE_AGENT_PROVIDER_URL", "http://agent:4041", "provider_url", "http://agent:4041"),
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_AGENT_MQTT", " auto", "METROPOLE_AGENT_MQTT must be auto, external or off, not ' auto'"),  # never stripped
    ("METROPOLE_AGENT_MQTT", "", "METROPOLE_AGENT_MQTT must be auto, external or off, not ''"),
    ("METROPOLE_AGENT_MQTT_PROTOCOL", "5.0", "METROPOLE_AGENT_MQTT_PROTOCOL='5.0' is not a whole number"),
    ("METROPOLE_AGENT_MQTT_SESSION_EXPIRY", "1d", "METROPOLE_AGENT_MQTT_SESSION_EXPIRY='1d' is not a whole number"),
    ("METROPOLE_AGENT_BATCH_MODE", "upsert", "METROPOLE_AGENT_BATCH_MODE must be update, merge or replace, not 'upsert'"),
    ("METROPOLE_AGENT_BATCH_SIZE", "", "METROPOLE_AGENT_BATCH_SIZE='' is not a whole number"),
    ("METROPOLE_AGENT_DELIVERY_WORKERS", "two", "METROPOLE_AGENT_DELIVERY_WORKERS='two' is not a whole number"),
    ("METROPOLE_AGENT_REQUESTS_IN_FLIGHT", "x", "METROPOLE_AGENT_REQUESTS_IN_FLIGHT='x' is not a whole number"),
    ("METROPOLE_AGENT_BATCH_REPEATS", "all", "METROPOLE_AGENT_BATCH_REPEATS='all' is not a whole number"),
    ("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL", "-1",
     "METROPOLE_AGENT_DEVICE_STATUS_INTERVAL must be a number of seconds, 0 or more"),
    ("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL", "nan",
     "METROPOLE_AGENT_DEVICE_STATUS_INTERVAL must be a number of seconds, 0 or more"),
    ("METROPOLE_AGENT_DEVICE_STATUS_INTERVAL", "10s", "METROPOLE_AGENT_DEVICE_STATUS_INTERVAL='10s' is not a number"),
    ("METROPOLE_AGENT_OUTBOX_SYNC", "OFF", "METROPOLE_AGENT_OUTBOX_SYNC must be FULL or NORMAL"),
    ("METROPOLE_AGENT_BROKER_TIMEOUT", "", "METROPOLE_AGENT_BROKER_TIMEOUT='' is not a number"),
    ("METROPOLE_AGENT_COMMANDS", "poll", ("METROPOLE_AGENT_COMMANDS must be one of subscription, registration, off, "
                                          "not 'poll'")),
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("METROPOLE_AGENT_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(RuntimeOptions.from_env(), field) == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        RuntimeOptions.from_env()
    assert str(caught.value) == message


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--agent-mqtt, --agent-batch-mode and `run`'s batch size win; None (not given) leaves the variable's value."""
    monkeypatch.setenv("METROPOLE_AGENT_MQTT", "external")
    monkeypatch.setenv("METROPOLE_AGENT_BATCH_SIZE", "7")
    o = RuntimeOptions.from_env(mqtt="off", batch_mode=None, batch_size=2000)
    assert (o.mqtt, o.batch_mode, o.batch_size) == ("off", "update", 2000)
    assert RuntimeOptions.from_env(mqtt=None, batch_size=None).batch_size == 7


def test_nothing_set_is_the_defaults() -> None:
    assert RuntimeOptions.from_env() == RuntimeOptions()
