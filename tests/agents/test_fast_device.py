"""One fast device (a gateway forwarding a district): real Mosquitto -> the agent -> the embedded broker with history.

The device publishes its measures back to back at QoS 1, faster than one
request per measure can carry them, so the agent holds many of them at once:
every measure must end up as an instance of the entity's history, and the
broker must have applied them in the device's order (a later measure's
update never committed before an earlier one's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.agents import test_end_to_end as e2e
from tests.agents.test_end_to_end import Stack, _group, _publisher, _wait

stack = e2e.stack  # the fixture: broker and agent as subprocesses, Mosquitto the shared one

pytestmark = pytest.mark.mqtt

N = 300


def _stamp(i: int) -> str:
    # devices time-stamp their measures: history keeps one instance per observedAt (see test_end_to_end)
    return f"2026-11-26T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"


def _history(s: Stack, entity_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{s.broker_url}/ngsi-ld/v1/temporal/entities/{entity_id}",
                  params={"attrs": "no2", "options": "sysAttrs", "lastN": str(2 * N)}, headers=s.ngsi(), timeout=10)
    assert r.status_code == 200, r.text
    instances = r.json().get("no2", [])
    return instances if isinstance(instances, list) else [instances]


@pytest.fixture
def fast(stack: Stack) -> Iterator[Stack]:
    _group(stack)
    yield stack


def test_one_fast_device_keeps_every_measure_in_history_in_order(fast: Stack) -> None:
    s = fast
    pub = _publisher(*s.mqtt)
    try:
        # first measure alone: the device is autoprovisioned before the stream
        pub.publish(f"/json/{s.apikey}/gw/attrs", orjson.dumps({"no2": 0, "TimeInstant": _stamp(0)}),
                    qos=1).wait_for_publish(10)
        sent = [pub.publish(f"/json/{s.apikey}/gw/attrs", orjson.dumps({"no2": i, "TimeInstant": _stamp(i)}), qos=1)
                for i in range(1, N)]
        for info in sent:
            info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()
    entity_id = "urn:ngsi-ld:AirQualityObserved:gw"
    # every measure, and at least the Device entity's first status (the later ones are coalesced per device:
    # METROPOLE_AGENT_DEVICE_STATUS_INTERVAL, tests/agents/test_device_status.py)
    _wait(lambda: s.metric("metropole_agent_delivered_total") >= N + 1, 60, f"{N + 1} entity updates delivered")
    _wait(lambda: s.metric("metropole_agent_outbox_depth") == 0, 30, "the outbox to drain")
    assert s.metric("metropole_agent_dead_letters_total") == 0
    current = s.entity(entity_id)
    assert current is not None and current["no2"]["value"] == N - 1  # the last measure landed last

    history = _history(s, entity_id)
    by_time = sorted(history, key=lambda i: i["observedAt"])
    assert [i["value"] for i in by_time] == list(range(N)), "every measure is an instance of history"
    # the order the broker applied them in: each measure's update committed no earlier than the one before
    modified = [i["modifiedAt"] for i in by_time]
    late = [(v, m) for v, m in enumerate(modified) if v and m < modified[v - 1]]
    assert not late, f"measures applied before an earlier one: {late[:5]}"
