"""The service gates: a missing PostgreSQL or MQTT broker skips on a user's machine and fails under CI=true.

Each case runs pytest in a subprocess on a tiny test that asks for the
service, with the service's port pointed at a closed port, and reads the
outcome pytest reports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent

PROBE = '''
def test_needs_postgres(postgres_dsn):
    assert postgres_dsn

def test_needs_mqtt(mqtt_broker):
    assert mqtt_broker
'''


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _run_probe(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    probe = PROJECT / "tests" / f"test_zz_probe_{os.getpid()}_{int(ci)}.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    port = str(_closed_port())
    env.update(METROPOLE_TEST_PG_PORT=port, METROPOLE_TEST_MQTT_PORT=port,
               METROPOLE_TEST_PG_DSN=f"postgresql://postgres@127.0.0.1:{port}/postgres")
    if ci:
        env["CI"] = "true"
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(probe)],
            cwd=PROJECT, env=env, check=False, capture_output=True, text=True, timeout=120,
        )
    finally:
        probe.unlink(missing_ok=True)


def test_missing_services_skip_with_the_reason_on_a_users_machine(tmp_path: Path) -> None:
    result = _run_probe(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout
    assert "PostgreSQL is not reachable" in result.stdout
    assert "MQTT broker (Mosquitto) is not reachable" in result.stdout


def test_missing_services_fail_the_run_under_ci(tmp_path: Path) -> None:
    result = _run_probe(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 errors" in result.stdout  # a failing fixture is reported as an error
    assert "PostgreSQL is not reachable" in result.stdout
    assert "CI=true requires it" in result.stdout


@pytest.mark.postgres
def test_postgresql_answers_sql(postgres_dsn: str) -> None:
    """The real PostgreSQL the storage tests use accepts a connection and a query."""
    import asyncio

    import asyncpg

    async def version() -> int:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            return int(await conn.fetchval("SHOW server_version_num"))
        finally:
            await conn.close()

    assert asyncio.run(version()) >= 120000  # jsonb and the SQL the stores use need 12+


@pytest.mark.mqtt
def test_mqtt_broker_round_trips_a_qos1_message(mqtt_broker: tuple[str, int]) -> None:
    """The real Mosquitto the agent tests use delivers a QoS 1 message back to us."""
    import threading
    import uuid

    import paho.mqtt.client as mqtt

    host, port = mqtt_broker
    topic = f"metropole/test/{uuid.uuid4()}"
    got = threading.Event()
    payloads: list[bytes] = []

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: (payloads.append(m.payload), got.set())
    client.connect(host, port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        client.publish(topic, b"t|21.5", qos=1).wait_for_publish(5)
        assert got.wait(5), "no message came back from the broker"
    finally:
        client.loop_stop()
        client.disconnect()
    assert payloads == [b"t|21.5"]
