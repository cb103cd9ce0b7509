"""Issue 17, end to end: a measure whose string holds \\u0000, sent over MQTT to the agents, whose broker keeps
its data in PostgreSQL (which cannot store a NUL). It once got a 500, and the agent retried it for ever while
every later measure of the tenant waited. Now it is dead-lettered with the broker's ProblemDetails and the
measures behind it, of the same device and of others, are delivered."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from bench.procs import Managed, agent_process, free_port
from tests import services
from tests.agents.test_end_to_end import Stack, _publisher, _wait

pytestmark = pytest.mark.mqtt


@pytest.fixture
def pg_stack(mqtt_broker: tuple[str, int], postgres_dsn: str, tmp_path: Path) -> Iterator[Stack]:
    schema = f"poison_{uuid.uuid4().hex[:12]}"
    port = free_port()
    broker = Managed([sys.executable, "-m", "metropole", "broker", "--port", str(port), "--data", str(tmp_path / "b")],
                     f"http://127.0.0.1:{port}/version", env={"METROPOLE_BROKER_STORE": f"{postgres_dsn}?schema={schema}"},
                     log=tmp_path / "broker.log")
    broker.start()
    broker_url = f"http://127.0.0.1:{port}"
    tag = uuid.uuid4().hex[:10]
    agent, prov, http = agent_process(tmp_path / "agent", broker_url, mqtt_port=mqtt_broker[1],
                                      client_id=f"metropole-poison-{tag}", log=tmp_path / "agent.log")
    agent.start()
    try:
        yield Stack(broker, broker_url, agent, f"http://127.0.0.1:{prov}", f"http://127.0.0.1:{http}", mqtt_broker,
                    f"key{tag}", tmp_path)
    finally:
        agent.stop()
        broker.stop()

        async def drop() -> None:
            conn = await asyncpg.connect(services.POSTGRES_DSN)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


def test_a_nul_measure_is_dead_lettered_and_blocks_nothing(pg_stack: Stack) -> None:
    s = pg_stack
    r = httpx.post(f"{s.provisioning}/iot/services", headers=s.headers(), timeout=10, json={"services": [
        {"apikey": s.apikey, "cbroker": s.broker_url, "entity_type": "AirQualityObserved", "resource": "/iot/json",
         "autoprovision": True}]})
    assert r.status_code == 201, r.text
    pub = _publisher(*s.mqtt)
    try:
        pub.publish(f"/json/{s.apikey}/poisoned/attrs", orjson.dumps({"name": "bad\u0000name"}), qos=1).wait_for_publish(5)
        for n in range(3):
            pub.publish(f"/json/{s.apikey}/poisoned/attrs", orjson.dumps({"no2": n}), qos=1).wait_for_publish(5)
            pub.publish(f"/json/{s.apikey}/healthy-{n}/attrs", orjson.dumps({"no2": n}), qos=1).wait_for_publish(5)
    finally:
        pub.loop_stop()
        pub.disconnect()
    for n in range(3):
        _wait(lambda n=n: s.entity(f"urn:ngsi-ld:AirQualityObserved:healthy-{n}") is not None, 60, f"healthy-{n}")
    _wait(lambda: (s.entity("urn:ngsi-ld:AirQualityObserved:poisoned") or {}).get("no2", {}).get("value") == 2, 60,
          "the poisoned device's later measures")
    _wait(lambda: s.metric("metropole_agent_dead_letters_total") >= 1, 30, "the dead letter")
    dead = httpx.get(f"{s.provisioning}/iot/outbox/dead-letters", headers=s.headers(), timeout=5).json()
    assert dead["count"] == 1 and dead["deadLetters"][0]["device_id"] == "poisoned"
    problem = dead["deadLetters"][0]["problem"]
    assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData" and "NUL" in problem["detail"]
    assert s.metric("metropole_agent_outbox_depth") == 0
