"""agents/settings.py: every METROPOLE_AGENT_* variable of AgentSettings, parsed as before pydantic-settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agents.settings import DEFAULT_CONTEXTS, AgentSettings

# (variable, raw value, field, expected value)
PARSED: list[tuple[str, str, str, Any]] = [
    ("METROPOLE_AGENT_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("METROPOLE_AGENT_HOST", "", "host", ""),  # set but empty is the empty text, as before
    ("METROPOLE_AGENT_PROVISIONING_PORT", "14041", "provisioning_port", 14041),
    ("METROPOLE_AGENT_HTTP_PORT", " 17896 ", "http_port", 17896),
    ("METROPOLE_AGENT_DATA", "/srv/agents", "data_dir", Path("/srv/agents")),
    ("METROPOLE_AGENT_REGISTRY", "postgresql://db/x?schema=agents", "registry_url", "postgresql://db/x?schema=agents"),
    ("METROPOLE_AGENT_BROKER_URL", "http://orion-ld:1026", "broker_url", "http://orion-ld:1026"),
    ("METROPOLE_AGENT_CONTEXTS", "http://a/ctx.jsonld, http://b/ctx.jsonld ,", "contexts",
     ("http://a/ctx.jsonld", "http://b/ctx.jsonld")),
    ("METROPOLE_AGENT_CONTEXTS", "", "contexts", DEFAULT_CONTEXTS),  # empty: the defaults
    ("METROPOLE_AGENT_CONTEXTS", ",", "contexts", ()),  # set, naming none: no Link header context
    ("METROPOLE_AGENT_MQTT_HOST", "mosquitto", "mqtt_host", "mosquitto"),
    ("METROPOLE_AGENT_MQTT_PORT", "8883", "mqtt_port", 8883),
    ("METROPOLE_AGENT_MQTT_TLS", "true", "mqtt_tls", True),
    ("METROPOLE_AGENT_MQTT_TLS", " On ", "mqtt_tls", True),  # these flags strip their value
    ("METROPOLE_AGENT_MQTT_TLS", "t", "mqtt_tls", False),
    ("METROPOLE_AGENT_MQTT_CA", "/ca.pem", "mqtt_ca", "/ca.pem"),
    ("METROPOLE_AGENT_MQTT_CERT", "/c.pem", "mqtt_cert", "/c.pem"),
    ("METROPOLE_AGENT_MQTT_KEY", "/k.pem", "mqtt_key", "/k.pem"),
    ("METROPOLE_AGENT_BROKER_API_KEY", "k-123", "broker_api_key", "k-123"),
    ("METROPOLE_AGENT_BROKER_TOKEN", "eyJ.x.y", "broker_token", "eyJ.x.y"),
    ("METROPOLE_AGENT_OUTBOX", "/var/outbox.db", "outbox_path", "/var/outbox.db"),
    ("METROPOLE_AGENT_AUTOPROVISION", "off", "autoprovision", False),
    ("METROPOLE_AGENT_AUTOPROVISION", "", "autoprovision", False),  # set but empty turns it off, as before
    ("METROPOLE_AGENT_AUTOPROVISION", "YES", "autoprovision", True),
    ("METROPOLE_AGENT_MAX_MESSAGE_BYTES", "1024", "max_message_bytes", 1024),
    ("METROPOLE_AGENT_MAX_ATTRIBUTES", "10", "max_attributes", 10),
    ("METROPOLE_AGENT_MAX_VALUE_LENGTH", "1_024", "max_value_length", 1024),
    ("METROPOLE_AGENT_CHECK_CBROKER", "0", "check_cbroker", False),
    ("METROPOLE_AGENT_CHECK_CBROKER", "1", "check_cbroker", True),
    ("METROPOLE_AGENT_CBROKER_ALLOWED", "*", "cbroker_allowed", "*"),
    ("METROPOLE_AGENT_MAX_PROVISIONING_BYTES", "65536", "max_provisioning_bytes", 65536),
    ("METROPOLE_AGENT_COMMAND_TIMEOUT", "1.5", "command_timeout", 1.5),
    ("METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT", "7200", "lorawan_command_timeout", 7200.0),
    ("METROPOLE_AGENT_LORAWAN_SERVERS", '{"ttn": {"provider": "ttn"}}', "lorawan_servers", '{"ttn": {"provider": "ttn"}}'),
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_AGENT_PROVISIONING_PORT", "", "METROPOLE_AGENT_PROVISIONING_PORT='' is not a whole number"),
    ("METROPOLE_AGENT_HTTP_PORT", "http", "METROPOLE_AGENT_HTTP_PORT='http' is not a whole number"),
    ("METROPOLE_AGENT_MQTT_PORT", "1883.0", "METROPOLE_AGENT_MQTT_PORT='1883.0' is not a whole number"),
    ("METROPOLE_AGENT_MAX_MESSAGE_BYTES", "256k", "METROPOLE_AGENT_MAX_MESSAGE_BYTES='256k' is not a whole number"),
    ("METROPOLE_AGENT_MAX_ATTRIBUTES", "all", "METROPOLE_AGENT_MAX_ATTRIBUTES='all' is not a whole number"),
    ("METROPOLE_AGENT_MAX_VALUE_LENGTH", "4 KiB", "METROPOLE_AGENT_MAX_VALUE_LENGTH='4 KiB' is not a whole number"),
    ("METROPOLE_AGENT_MAX_PROVISIONING_BYTES", "8M", "METROPOLE_AGENT_MAX_PROVISIONING_BYTES='8M' is not a whole number"),
    ("METROPOLE_AGENT_COMMAND_TIMEOUT", "1m", "METROPOLE_AGENT_COMMAND_TIMEOUT='1m' is not a number"),
    ("METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT", "", "METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT='' is not a number"),
]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("METROPOLE_AGENT_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(AgentSettings.from_env(), field) == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        AgentSettings.from_env()
    assert str(caught.value) == message


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `metropole agent`/`run` flags win; a flag not given (None) leaves the variable's value."""
    monkeypatch.setenv("METROPOLE_AGENT_MQTT_PORT", "1999")
    monkeypatch.setenv("METROPOLE_AGENT_HTTP_PORT", "7000")
    s = AgentSettings.from_env(mqtt_port=1884, http_port=None, data_dir="/tmp/a", contexts=["http://c"])
    assert (s.mqtt_port, s.http_port, s.data_dir, s.contexts) == (1884, 7000, Path("/tmp/a"), ("http://c",))


def test_nothing_set_is_the_defaults() -> None:
    assert AgentSettings.from_env() == AgentSettings()
