"""Gates for tests that need a real service (PostgreSQL, Mosquitto).

On a user's machine an absent service skips the test with the reason; under
CI=true the same absence fails the test, naming the service, so a CI run can
never go green by skipping what it was meant to exercise.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_HOST = os.environ.get("METROPOLE_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("METROPOLE_TEST_PG_PORT", "5432"))
POSTGRES_DSN = os.environ.get(
    "METROPOLE_TEST_PG_DSN", f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
)
MQTT_HOST = os.environ.get("METROPOLE_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("METROPOLE_TEST_MQTT_PORT", "1883"))


def in_ci() -> bool:
    """True when running under CI, where a missing service is a failure."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def require_service(name: str, host: str, port: int) -> None:
    """Skip (on a user's machine) or fail (under CI) when the service is absent."""
    if answers(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if in_ci():
        pytest.fail(f"{reason}; CI=true requires it (start it, see .ci/run)", pytrace=False)
    pytest.skip(f"{reason} (start it to run this test)")


def require_postgres() -> str:
    """Return the DSN of the test PostgreSQL, or skip/fail when it is absent."""
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return POSTGRES_DSN


def require_mqtt() -> tuple[str, int]:
    """Return (host, port) of the test MQTT broker, or skip/fail when it is absent."""
    require_service("MQTT broker (Mosquitto)", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT
