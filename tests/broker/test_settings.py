"""broker/settings.py and broker/limits.py: every METROPOLE_* variable of the broker, parsed as before pydantic-settings."""

from __future__ import annotations

import os
from typing import Any

import pytest

from broker.limits import Limits, LimitsEnv
from broker.settings import BrokerSettings, NotificationTlsEnv
from web.settings import load

# (variable, raw value, field of BrokerSettings (dotted into limits), expected value)
PARSED: list[tuple[str, str, str, Any]] = [
    ("METROPOLE_BROKER_STORE", "postgresql://db/x", "store_url", "postgresql://db/x"),
    ("METROPOLE_BROKER_STORE", "", "store_url", ""),
    ("METROPOLE_BROKER_DEFAULT_LIMIT", "50", "default_limit", 50),
    ("METROPOLE_BROKER_MAX_LIMIT", " 2000 ", "max_limit", 2000),
    ("METROPOLE_BROKER_TEMPORAL_LIMIT", "1_000", "temporal_limit", 1000),
    ("METROPOLE_CONTEXT_TIMEOUT", "2.5", "context_timeout", 2.5),
    ("METROPOLE_CONTEXT_MAX_BYTES", "4096", "context_max_bytes", 4096),
    ("METROPOLE_CONTEXT_FAILURE_TTL", "0", "context_failure_ttl", 0.0),
    ("METROPOLE_CONTEXT_WORKERS", "2", "context_workers", 2),
    ("METROPOLE_CONTEXT_ALLOWED_HOSTS", "A.example, b.example ,", "context_allowed_hosts",
     frozenset({"a.example", "b.example"})),
    ("METROPOLE_CONTEXT_ALLOWED_HOSTS", "", "context_allowed_hosts", None),  # empty: any host
    ("METROPOLE_CONTEXT_ALLOWED_HOSTS", ",", "context_allowed_hosts", frozenset()),  # set, naming none: no host
    ("METROPOLE_CONTEXT_REFUSE_PRIVATE", "YES", "context_refuse_private", True),
    ("METROPOLE_CONTEXT_REFUSE_PRIVATE", "on", "context_refuse_private", True),
    ("METROPOLE_CONTEXT_REFUSE_PRIVATE", " true", "context_refuse_private", False),  # this one never stripped
    ("METROPOLE_CONTEXT_REFUSE_PRIVATE", "no", "context_refuse_private", False),
    ("METROPOLE_CONTEXT_REFUSE_PRIVATE", "maybe", "context_refuse_private", False),
    ("METROPOLE_BROKER_FEDERATION_TIMEOUT", "0.5", "federation_timeout", 0.5),
    ("METROPOLE_BROKER_MAX_BATCH_ENTITIES", "10", "limits.max_batch_entities", 10),
    ("METROPOLE_BROKER_MAX_ID_BYTES", "64", "limits.max_id_bytes", 64),
    ("METROPOLE_BROKER_MAX_ATTRIBUTES", "5", "limits.max_attributes", 5),
    ("METROPOLE_BROKER_MAX_Q_LENGTH", "100", "limits.max_q_length", 100),
    ("METROPOLE_BROKER_MAX_Q_DEPTH", "3", "limits.max_q_depth", 3),
    ("METROPOLE_BROKER_MAX_PATTERN_LENGTH", "16", "limits.max_pattern_length", 16),
    ("METROPOLE_BROKER_MAX_GEOMETRY_POINTS", "9", "limits.max_geometry_points", 9),
    ("METROPOLE_BROKER_MAX_DEPTH", "", "limits.max_depth", 64),  # empty: the default
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_BROKER_DEFAULT_LIMIT", "many", "METROPOLE_BROKER_DEFAULT_LIMIT='many' is not a whole number"),
    ("METROPOLE_BROKER_MAX_LIMIT", "20.0", "METROPOLE_BROKER_MAX_LIMIT='20.0' is not a whole number"),
    ("METROPOLE_BROKER_TEMPORAL_LIMIT", "", "METROPOLE_BROKER_TEMPORAL_LIMIT='' is not a whole number"),
    ("METROPOLE_CONTEXT_TIMEOUT", "5s", "METROPOLE_CONTEXT_TIMEOUT='5s' is not a number"),
    ("METROPOLE_CONTEXT_MAX_BYTES", "1MB", "METROPOLE_CONTEXT_MAX_BYTES='1MB' is not a whole number"),
    ("METROPOLE_CONTEXT_FAILURE_TTL", "", "METROPOLE_CONTEXT_FAILURE_TTL='' is not a number"),
    ("METROPOLE_CONTEXT_WORKERS", "four", "METROPOLE_CONTEXT_WORKERS='four' is not a whole number"),
    ("METROPOLE_BROKER_FEDERATION_TIMEOUT", "soon", "METROPOLE_BROKER_FEDERATION_TIMEOUT='soon' is not a number"),
    ("METROPOLE_BROKER_MAX_BODY_BYTES", "8M", "METROPOLE_BROKER_MAX_BODY_BYTES='8M' is not a whole number"),
    ("METROPOLE_BROKER_MAX_SUBSCRIPTIONS", "0", "METROPOLE_BROKER_MAX_SUBSCRIPTIONS='0' must be at least 1"),
    ("METROPOLE_BROKER_MAX_Q_DEPTH", "-1", "METROPOLE_BROKER_MAX_Q_DEPTH='-1' must be at least 1"),
]


def _field(settings: BrokerSettings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), PARSED)
def test_each_variable(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any) -> None:
    monkeypatch.setenv(variable, raw)
    assert _field(BrokerSettings.from_env(), field) == expected


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, message: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError) as caught:
        BrokerSettings.from_env()
    assert str(caught.value) == message


def test_every_limit_has_its_variable() -> None:
    """METROPOLE_BROKER_ and the field's name in upper case, for every field of Limits."""
    names = {f: 7 for f in Limits.__dataclass_fields__}
    env = {"METROPOLE_BROKER_" + f.upper(): "7" for f in names}
    assert load(LimitsEnv, env) == names


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `metropole broker --store/--port` passes wins; None (a flag not given) leaves the variable's value."""
    monkeypatch.setenv("METROPOLE_BROKER_STORE", "sqlite:///from-env.db")
    monkeypatch.setenv("METROPOLE_BROKER_DEFAULT_LIMIT", "30")
    assert BrokerSettings.from_env(store_url="sqlite:///from-flag.db").store_url == "sqlite:///from-flag.db"
    s = BrokerSettings.from_env(store_url=None, port=1999, data_dir="/tmp/x")
    assert (s.store_url, s.default_limit, s.port, str(s.data_dir)) == ("sqlite:///from-env.db", 30, 1999, "/tmp/x")


def test_nothing_set_is_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("METROPOLE_BROKER_", "METROPOLE_CONTEXT_"))]:
        monkeypatch.delenv(name)
    assert BrokerSettings.from_env() == BrokerSettings()


def test_notification_tls_variables() -> None:
    env = {"METROPOLE_BROKER_MQTT_CA": "/ca.pem", "METROPOLE_BROKER_MQTT_CERT": "/c.pem", "METROPOLE_BROKER_MQTT_KEY": ""}
    assert load(NotificationTlsEnv, env) == {"ca": "/ca.pem", "cert": "/c.pem", "key": ""}
