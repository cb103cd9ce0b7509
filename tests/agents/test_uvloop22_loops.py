"""The agents' MQTT client on both event loops `metropole run|demo|agent` may run on (issue 16, uvloop22).

METROPOLE_EVENT_LOOP=auto puts every command on uvloop; `asyncio` is the way back. uvloop's transports
(`uvloop.loop.TCPTransport`, its SSL transport) are not `asyncio.Transport` subclasses: the client's
`connection_made` asserted that they were, so on uvloop it never got past the first connection (the
assertion was taken as a failed attempt and retried forever), no measure arrived over MQTT and the demo's
dashboard never showed an index (tests/dashboard errored with METROPOLE_EVENT_LOOP=uvloop).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from agents.embedded_mqtt import EmbeddedMqttBroker
from agents.settings import AgentSettings
from agents.transports.mqtt import MqttOptions, MqttTransport
from tests.agents.test_mqtt_client import FakeIntake
from tests.security.test_tls import TlsMosquitto, _agent_receives, tls_mosquitto  # noqa: F401 (the fixture)

T = TypeVar("T")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop,
                                                             "uvloop": uvloop.new_event_loop}


def _run(loop: str, main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(main)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_the_mqtt_client_subscribes_publishes_and_pauses_on_either_loop(loop: str) -> None:
    """Through the embedded MQTT broker (the one `run` starts when none answers), in the loop under test."""

    async def go() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop) == (loop == "uvloop")
        broker = EmbeddedMqttBroker("127.0.0.1", 0)
        await broker.start()
        intake = FakeIntake()
        transport = MqttTransport(MqttOptions(port=broker.port, client_id=f"uvloop22-{uuid.uuid4().hex[:8]}",
                                              protocol=4, reconnect_min=0.1, reconnect_max=0.5),
                                  intake)  # type: ignore[arg-type]
        transport.start()
        try:
            await _until(transport.connected.is_set, f"the agent's MQTT client did not connect on {loop}")
            # QoS 1 out: the broker's PUBACK comes back through the same transport; then the measure comes in
            await transport.publish("/json/k22/dev1/attrs", b'{"no2": 41}', qos=1)
            await _until(lambda: bool(intake.got), "the measure did not come back through the subscription")
            assert [(m.apikey, m.device_id, m.payload) for m, _ in intake.got] == [("k22", "dev1", b'{"no2": 41}')]
            conn = transport._connection
            assert conn is not None and conn.open and conn.reading
            conn.pause(True)  # back-pressure: the loop's transport stops reading
            assert not conn.reading
            conn.pause(False)
            assert conn.reading
            intake.commit()  # its PUBACK goes out on the loop's transport
            await transport.publish("/json/k22/dev2/attrs", b'{"no2": 42}', qos=1)
            await _until(lambda: len(intake.got) == 1, "the second measure did not arrive")
        finally:
            await transport.aclose()
            await broker.stop()

    _run(loop, go())


@pytest.mark.mqtt
def test_the_agent_subscribes_over_tls_on_uvloop(tls_mosquitto: TlsMosquitto) -> None:  # noqa: F811
    """uvloop's own SSL transport (not asyncio's sslproto) under the client, against Mosquitto with a test CA."""
    m = tls_mosquitto
    settings = AgentSettings(mqtt_ca=str(m.pki.ca), mqtt_cert=str(m.pki.client_cert), mqtt_key=str(m.pki.client_key))
    assert _run("uvloop", _agent_receives(m, m.client_cert_port, settings))
