"""The agent's own MQTT client (agents.transports.mqtt): packet parsing, batched PUBACKs, back-pressure.

Against Mosquitto and the embedded broker it is exercised by test_transports and test_end_to_end;
here a fake socket transport shows what goes over the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agents.messages import Inbound
from agents.transports.mqtt import MqttOptions, MqttTransport, _Connection, varint


class FakeSocket(asyncio.Transport):
    """What _Connection writes, and whether it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.reading, self.closing = True, False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        self.closing = True


class FakeIntake:
    """Takes what the transport submits; commit() acknowledges it as the real intake does."""

    def __init__(self) -> None:
        self.got: list[tuple[Inbound, Callable[[bool], None]]] = []
        self.listeners: list[Callable[[], None]] = []

    @property
    def backlog(self) -> int:
        return len(self.got)

    def on_commit(self, listener: Callable[[], None]) -> None:
        self.listeners.append(listener)

    def submit(self, message: Inbound, done: Callable[[bool], None]) -> None:
        self.got.append((message, done))

    def commit(self, ok: bool = True) -> None:
        got, self.got = self.got, []
        for _, done in got:
            done(ok)
        for listener in self.listeners:
            listener()


def publish(topic: bytes, mid: int, payload: bytes, *, v5: bool = True, qos: int = 1, dup: bool = False) -> bytes:
    properties = b"\x08\x01\x00\x03\x02\x00\x00\x00\x3c" if v5 else b""  # Payload Format, Message Expiry
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body += (varint(len(properties)) + properties if v5 else b"") + payload
    return bytes([0x30 | qos << 1 | (0x08 if dup else 0)]) + varint(len(body)) + body


def connection(options: MqttOptions) -> tuple[_Connection, FakeSocket, FakeIntake, MqttTransport]:
    intake = FakeIntake()
    transport = MqttTransport(options, intake)  # type: ignore[arg-type]
    conn = _Connection(transport, options.protocol == 5)
    sock = FakeSocket()
    conn.connection_made(sock)
    transport._connection = conn
    return conn, sock, intake, transport


def test_packets_split_anywhere_are_parsed_and_their_pubacks_leave_in_one_write() -> None:
    async def go() -> None:
        conn, sock, intake, _ = connection(MqttOptions())
        big = b'{"no2": 1, "note": "' + b"x" * 300 + b'"}'  # a remaining length of two bytes
        stream = (publish(b"/json/k/d1/attrs", 1, b'{"no2": 41}') + publish(b"/k/d2/attrs/t", 2, b"21.5")
                  + publish(b"/ul/k/d3/attrs", 3, b"t|1") + publish(b"/k/d1/attrs", 4, big)
                  + publish(b"/not/a/measure/topic/x", 5, b"1"))
        for start in range(0, len(stream), 7):
            conn.data_received(stream[start:start + 7])
        assert [(m.protocol, m.device_id, m.attribute, m.payload) for m, _ in intake.got] == [
            ("json", "d1", None, b'{"no2": 41}'), ("json", "d2", "t", b"21.5"), ("ul", "d3", None, b"t|1"),
            ("json", "d1", None, big)]
        await asyncio.sleep(0)
        assert sock.writes == [b"\x40\x02\x00\x05"], "a topic that is no measure is acknowledged at once"
        intake.commit()
        await asyncio.sleep(0)
        assert sock.writes[1:] == [b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x00\x03\x40\x02\x00\x04"]

    asyncio.run(go())


def test_a_failed_commit_or_a_lost_connection_sends_no_puback() -> None:
    async def go() -> None:
        conn, sock, intake, _ = connection(MqttOptions(protocol=4))
        conn.data_received(publish(b"/json/k/d1/attrs", 7, b"1", v5=False))
        intake.commit(ok=False)
        conn.data_received(publish(b"/json/k/d1/attrs", 8, b"2", v5=False))
        conn.connection_lost(None)  # the broker sends it again on the next connection
        intake.commit()
        await asyncio.sleep(0)
        assert sock.writes == []

    asyncio.run(go())


def test_a_redelivery_of_a_committed_message_is_acknowledged_not_taken_again() -> None:
    """The broker sends again (DUP) what we committed but could not acknowledge: one measure, not two."""
    async def go() -> None:
        first, sock1, intake, transport = connection(MqttOptions(protocol=4))
        first.data_received(publish(b"/json/k/d1/attrs", 9, b'{"no2": 1}', v5=False))
        first.data_received(publish(b"/json/k/d1/attrs", 10, b'{"no2": 2}', v5=False))
        first.connection_lost(None)
        intake.got[0][1](True)  # message 9 committed after the connection dropped: no PUBACK could leave
        intake.got = intake.got[1:]  # message 10 is still being committed
        second = _Connection(transport, False)
        sock2 = FakeSocket()
        second.connection_made(sock2)
        second.data_received(publish(b"/json/k/d1/attrs", 9, b'{"no2": 1}', v5=False, dup=True))
        second.data_received(publish(b"/json/k/d1/attrs", 10, b'{"no2": 2}', v5=False, dup=True))
        second.data_received(publish(b"/json/k/d1/attrs", 11, b'{"no2": 3}', v5=False, dup=True))  # never seen
        second.data_received(publish(b"/json/k/d1/attrs", 12, b'{"no2": 1}', v5=False))  # the same reading again
        assert [m.payload for m, _ in intake.got] == [b'{"no2": 2}', b'{"no2": 3}', b'{"no2": 1}']
        await asyncio.sleep(0)
        assert sock1.writes == [] and sock2.writes == [b"\x40\x02\x00\x09"], "9 acknowledged at once, once"
        intake.commit()  # 10's first copy, 11 and 12: 10's redelivery is acknowledged with them
        await asyncio.sleep(0)
        assert sorted(sock2.writes[1]) == sorted(b"\x40\x02\x00\x0b\x40\x02\x00\x0c\x40\x02\x00\x0a")
        assert len(sock2.writes[1]) == 12
        assert transport._m_redelivered.get() == 2

    asyncio.run(go())


def test_a_redelivery_of_a_message_whose_commit_failed_is_taken_in() -> None:
    async def go() -> None:
        conn, sock, intake, _ = connection(MqttOptions(protocol=4))
        conn.data_received(publish(b"/json/k/d1/attrs", 3, b"1", v5=False))
        intake.commit(ok=False)
        conn.data_received(publish(b"/json/k/d1/attrs", 3, b"1", v5=False, dup=True))
        assert [m.payload for m, _ in intake.got] == [b"1"]
        intake.commit()
        await asyncio.sleep(0)
        assert sock.writes == [b"\x40\x02\x00\x03"]

    asyncio.run(go())


def test_reading_stops_while_the_intake_is_behind() -> None:
    async def go() -> None:
        conn, sock, intake, _ = connection(MqttOptions(max_backlog=4))
        conn.data_received(b"".join(publish(b"/json/k/d1/attrs", i, b"1") for i in range(1, 4)))
        assert sock.reading
        conn.data_received(publish(b"/json/k/d1/attrs", 4, b"1"))
        assert not sock.reading, "4 messages waiting for their commit: the broker keeps the rest"
        intake.commit()
        assert sock.reading

    asyncio.run(go())
