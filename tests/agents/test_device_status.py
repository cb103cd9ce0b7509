"""The Device entity's status, coalesced per device (METROPOLE_AGENT_DEVICE_STATUS_INTERVAL).

Real Mosquitto -> the agent -> the embedded broker with history, both as
subprocesses. A device with a Smart Data Models profile gets a Device entity
(dateLastValueReported, controlledProperty) besides its observation; that
status is sent at most once per interval per device, the latest one, and at
shutdown; the measures themselves are never coalesced. Interval 0 sends the
status with every measure, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bench.procs import agent_process, broker_process
from tests.agents.test_end_to_end import Stack, _group, _publisher, _wait

pytestmark = pytest.mark.mqtt

N = 40
OBSERVATION = "urn:ngsi-ld:AirQualityObserved:st"
DEVICE = "urn:ngsi-ld:Device:st"


def _stamp(i: int) -> str:
    return f"2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}Z"


def _stack(mqtt_broker: tuple[str, int], tmp_path: Path, interval: str) -> Iterator[Stack]:
    broker = broker_process(tmp_path / "broker", log=tmp_path / "broker.log")
    broker.start()
    broker_url = broker.ready_url.removesuffix("/version")
    tag = uuid.uuid4().hex[:10]
    agent, prov, http = agent_process(tmp_path / "agent", broker_url, mqtt_port=mqtt_broker[1],
                                      client_id=f"metropole-test-{tag}", log=tmp_path / "agent.log",
                                      extra_env={"METROPOLE_AGENT_DEVICE_STATUS_INTERVAL": interval})
    agent.start()
    s = Stack(broker, broker_url, agent, f"http://127.0.0.1:{prov}", f"http://127.0.0.1:{http}", mqtt_broker,
              f"key{tag}", tmp_path)
    try:
        _group(s)
        yield s
    finally:
        agent.stop()
        broker.stop()


@pytest.fixture
def held(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(mqtt_broker, tmp_path, "3600")  # nothing held falls due during the test


@pytest.fixture
def short(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(mqtt_broker, tmp_path, "0.5")


@pytest.fixture
def every(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(mqtt_broker, tmp_path, "0")


def _publish(s: Stack, n: int) -> None:
    pub = _publisher(*s.mqtt)
    try:
        # the first measure alone: the device is autoprovisioned before the stream
        pub.publish(f"/json/{s.apikey}/st/attrs", orjson.dumps({"no2": 0, "TimeInstant": _stamp(0)}),
                    qos=1).wait_for_publish(10)
        sent = [pub.publish(f"/json/{s.apikey}/st/attrs", orjson.dumps({"no2": i, "TimeInstant": _stamp(i)}), qos=1)
                for i in range(1, n)]
        for info in sent:
            info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()


def _history(s: Stack) -> list[int]:
    r = httpx.get(f"{s.broker_url}/ngsi-ld/v1/temporal/entities/{OBSERVATION}",
                  params={"attrs": "no2", "lastN": str(2 * N)}, headers=s.ngsi(), timeout=10)
    assert r.status_code == 200, r.text
    instances = r.json().get("no2", [])
    instances = instances if isinstance(instances, list) else [instances]
    return [i["value"] for i in sorted(instances, key=lambda i: i["observedAt"])]


def _last_reported(s: Stack) -> Any:
    device = s.entity(DEVICE)
    return None if device is None else device.get("dateLastValueReported", {}).get("value")


def _drained(s: Stack, delivered: int) -> None:
    _wait(lambda: s.metric("metropole_agent_delivered_total") >= delivered, 60, f"{delivered} updates delivered")
    _wait(lambda: s.metric("metropole_agent_outbox_depth") == 0, 30, "the outbox to drain")


def test_status_held_within_the_interval_and_sent_at_shutdown(held: Stack) -> None:
    s = held
    _publish(s, N)
    # every measure, and the first status (sent at once: the Device entity appears with the device)
    _drained(s, N + 1)
    assert _history(s) == list(range(N)), "every measure is an instance of history"
    assert s.metric("metropole_agent_outbox_appended_total") == N + 1, "the later statuses are held, not sent"
    assert _last_reported(s) == _stamp(0)
    assert s.entity(OBSERVATION)["no2"]["value"] == N - 1  # type: ignore[index]
    # a graceful stop commits the latest status held to the outbox; the agent delivers it when it is back
    assert s.agent.stop() == 0
    s.agent.start()
    _wait(lambda: _last_reported(s) == _stamp(N - 1), 60, "the latest status to be delivered after the restart")
    assert s.metric("metropole_agent_dead_letters_total") == 0
    assert _history(s) == list(range(N))


def test_status_sent_with_the_latest_time_once_the_interval_passes(short: Stack) -> None:
    s = short
    _publish(s, N)
    # no shutdown: the latest status goes out once its interval has passed
    _wait(lambda: _last_reported(s) == _stamp(N - 1), 60, "the Device entity to show the last measure's time")
    _drained(s, N + 1)
    assert _history(s) == list(range(N)), "every measure is an instance of history"
    device = s.entity(DEVICE)
    assert device is not None and device["controlledProperty"]["value"]


def test_interval_zero_sends_the_status_with_every_measure(every: Stack) -> None:
    s = every
    _publish(s, N)
    _drained(s, 2 * N)
    assert s.metric("metropole_agent_outbox_appended_total") == 2 * N
    assert _history(s) == list(range(N))
    assert _last_reported(s) == _stamp(N - 1)
