"""The MQTT client id: one per installation, stable across restarts; a session take-over is logged."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.outbox import Outbox
from agents.instance import default_client_id, installation_id
from agents.transports.intake import Intake
from agents.transports.mqtt import MqttOptions, MqttTransport


def test_installation_id_is_stable_per_data_folder_and_unique_between_them(tmp_path: Path) -> None:
    first = default_client_id(tmp_path / "a")
    assert first.startswith("metropole-agent-") and len(first) == len("metropole-agent-") + 12
    assert default_client_id(tmp_path / "a") == first, "a restart of the same installation keeps its id"
    assert installation_id(tmp_path / "b") != installation_id(tmp_path / "a"), "another installation, another id"
    assert (tmp_path / "a" / "agent-installation-id").read_text().strip() == first.removeprefix("metropole-agent-")


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", [5, 4])
def test_a_session_take_over_is_logged(mqtt_broker: tuple[str, int], tmp_path: Path, protocol: int,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """Another client connecting with the agent's id takes its session: the agent says so, naming the id."""
    host, port = mqtt_broker
    client_id = f"metropole-test-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.WARNING, logger="metropole.agents.mqtt")
    outbox = Outbox(tmp_path / "o.db")
    taken = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR and client_id in record.getMessage():
                taken.set()

    watch = Watch()
    logging.getLogger("metropole.agents.mqtt").addHandler(watch)

    async def go() -> None:
        intake = Intake(lambda _m: [], outbox)
        await intake.start()
        transport = MqttTransport(MqttOptions(host=host, port=port, client_id=client_id, protocol=protocol,
                                              session_expiry=60, reconnect_min=0.2, reconnect_max=0.5), intake)
        transport.start()
        assert await asyncio.to_thread(transport.connected.wait, 10)
        intruders: list[mqtt.Client] = []
        try:
            # the other "installation": connects with the same client id again and again, as a second agent would
            for _ in range(12):
                if taken.is_set():
                    break
                intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                       protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311)
                props = None
                if protocol == 5:
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = 60
                    intruder.connect(host, port, clean_start=False, properties=props)
                else:
                    intruder.connect(host, port)
                intruder.loop_start()
                intruders.append(intruder)
                await asyncio.to_thread(taken.wait, 1.0)
            assert taken.is_set(), "no error named the client id whose session was taken"
        finally:
            for intruder in intruders:
                intruder.loop_stop()
                intruder.disconnect()
            await transport.aclose()
            await intake.stop()

    try:
        asyncio.run(go())
    finally:
        logging.getLogger("metropole.agents.mqtt").removeHandler(watch)
        outbox.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # MQTT 5 brokers may say so (DISCONNECT 0x8E); Mosquitto 2.0.11 just closes the connection, as in 3.1.1
    assert any("session taken over" in m or "takes the session from us" in m for m in messages), messages
