"""The MQTT southbound transport, topics of iotagent-json and iotagent-ul.

    /<apikey>/<device_id>/attrs              JSON object or array (multi-measure)
    /<apikey>/<device_id>/attrs/<attr>       one attribute's value
    /json/<apikey>/<device_id>/attrs[/<attr>]
    /ul/<apikey>/<device_id>/attrs[/<attr>]  Ultralight 2.0 (`t|21.5|h|40`, `#` between groups)

Unlike the FIWARE agents (QoS 0), the agent subscribes at QoS 1 with a
persistent session (MQTT 5 `clean_start=False` and a session expiry; 3.1.1
`clean_session=False`) and acknowledges manually: the PUBACK leaves only once
the intake has committed the measure to the outbox. A crash before that makes
the broker send the message again when the agent reconnects with the same
client id. A PUBACK is only ever sent on the connection its PUBLISH came in
on: after a reconnect the broker sends what was not acknowledged again.

Several replicas share the load with a shared subscription
(`$share/<group>/<topic>`): the broker gives each message to one of them.
The price is that two measures of one device may then reach two replicas and
be delivered out of order; a single replica (the default) keeps device order.

The client is a small asyncio protocol of our own rather than paho-mqtt:
paho runs a thread of its own, reads a packet with three `recv` calls and
one `select`, builds an `MQTTMessage` and MQTT 5 `Properties` objects per
message and wakes its thread per acknowledgement, which together cost more
than decoding and mapping the measure (profiled: about half of the agent's
CPU at full load). Here the packets are parsed from whatever one read
returns, in the event loop that runs the intake, and the PUBACKs of one
commit leave in one write. Only what a QoS 1 subscriber needs is spoken:
CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH (QoS 0 and 1) and PUBACK,
PINGREQ/PINGRESP and DISCONNECT, in MQTT 5 and 3.1.1; and, for commands,
PUBLISH of our own at QoS 0 or 1 with the PUBACK that answers it.

Size: a message over the agent's limit (METROPOLE_AGENT_MAX_MESSAGE_BYTES)
is never held in memory: its start (topic, packet id) is read, the rest
discarded as it arrives, and it is rejected (`too_large`, counted, in the
rejections) and acknowledged. In MQTT 5 the CONNECT also sets the Maximum
Packet Size to 16 times that limit: beyond it the broker itself drops the
message (MQTT 5 3.1.2.11.4; Mosquitto logs it), so a 20 MB message never
crosses the network to us.

Redeliveries: a QoS 1 message committed to the outbox whose PUBACK did not
reach the broker (the connection dropped between the commit and the PUBACK,
or the broker stopped before it read it) comes again after the reconnect,
with the DUP flag and the same packet id (MQTT 3.1.1 4.4, MQTT 5 4.4). For
a device that sends no TimeInstant it would be a second instance in history,
a minute apart. The transport remembers the last `redelivery_window`
committed messages (packet id, topic, payload) and acknowledges such a
redelivery without taking it in again; a DUP message still being committed
waits for its first copy's outcome. Only DUP messages are compared: a device
sending the same reading twice is two measures. (A redelivery after the
agent itself was killed between commit and PUBACK is not recognised: the
memory is the process's.)

Client id: the persistent session is the client id's. Two agents with one
id take the session from each other (MQTT 5 DISCONNECT 0x8E "session taken
over" from brokers that send it; Mosquitto 2.0.11 does not, and closes the
connection as in 3.1.1): a 0x8E, or connections the broker closes right
after they opened, are logged as errors naming the client id.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from agents.messages import Inbound
from agents.metrics import Metrics
from agents.transports.intake import Intake

__all__ = ["COMMAND_RESULT_TOPICS", "MEASURE_TOPICS", "MqttOptions", "MqttTransport", "parse_command_result_topic",
           "parse_topic", "varint"]

log = logging.getLogger("metropole.agents.mqtt")

MEASURE_TOPICS: tuple[str, ...] = (
    "/+/+/attrs",
    "/+/+/attrs/+",
    "/json/+/+/attrs",
    "/json/+/+/attrs/+",
    "/ul/+/+/attrs",
    "/ul/+/+/attrs/+",
)
#: where devices answer commands (iotagent-json MQTTBinding.js:360, constants CONFIGURATION_COMMAND_UPDATE)
COMMAND_RESULT_TOPICS: tuple[str, ...] = ("/+/+/cmdexe", "/json/+/+/cmdexe", "/ul/+/+/cmdexe")
#: a command result handler: (protocol, apikey, device_id, payload) -> awaitable, acknowledged once it returns
CommandResults = Callable[[str, str, str, bytes], Awaitable[None]]
_PROTOCOLS = {"json": "json", "ul": "ul"}


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Where and how the agent subscribes."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "metropole-agent"
    share_group: str = ""  # "" = plain subscriptions; else $share/<group>/...
    protocol: int = 5  # 5 or 4 (3.1.1, for brokers without MQTT 5)
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600  # seconds the broker keeps our session (and queued QoS 1 messages)
    receive_maximum: int = 1000  # unacknowledged QoS 1 messages the broker may have in flight to us
    max_backlog: int = 2000  # messages read but not committed yet beyond which reading stops (see _Connection)
    username: str | None = None
    password: str | None = None
    reconnect_min: float = 1.0  # seconds before the first reconnection attempt, doubling up to reconnect_max
    reconnect_max: float = 10.0
    max_message_bytes: int = 0  # a payload beyond is rejected unread (0: no limit); see the module's "Size"
    tls: ssl.SSLContext | None = None  # MQTT over TLS (mqtts, usually 8883): the server verified against its CA


def parse_topic(topic: str) -> tuple[str, str, str, str | None] | None:
    """(protocol, apikey, device_id, attribute) of a measure topic, None when it is not one.

    The protocol is "json" or "ul" for prefixed topics, "" for `/<apikey>/<device_id>/attrs...`.
    """
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "":
        return None
    protocol = ""  # no prefix: told from the payload (see _sniff)
    if parts[1] in _PROTOCOLS and len(parts) >= 5 and parts[4] == "attrs":
        protocol = _PROTOCOLS[parts[1]]
        parts = parts[1:]
    if parts[3] != "attrs" or not parts[1] or not parts[2]:
        return None
    if len(parts) == 4:
        return protocol, parts[1], parts[2], None
    if len(parts) == 5 and parts[4]:
        return protocol, parts[1], parts[2], parts[4]
    return None


def parse_command_result_topic(topic: str) -> tuple[str, str, str] | None:
    """(protocol, apikey, device_id) of a `.../cmdexe` topic, None for any other topic."""
    parts = topic.split("/")
    if parts[0] != "" or parts[-1] != "cmdexe":
        return None
    if len(parts) == 5 and parts[1] in _PROTOCOLS and parts[2] and parts[3]:
        return _PROTOCOLS[parts[1]], parts[2], parts[3]
    if len(parts) == 4 and parts[1] and parts[2]:
        return "", parts[1], parts[2]
    return None


def _sniff(payload: bytes) -> str:
    """Protocol of a message on an unprefixed topic (both FIWARE agents use `/<apikey>/<id>/attrs`).

    A JSON object or array is iotagent-json's; anything else with a `|` is
    Ultralight 2.0; a bare value (single-attribute topics) reads the same in both.
    """
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        return "json"
    return "ul" if b"|" in payload else "json"


_second: tuple[int, str] = (-1, "")  # (a UTC second, its "YYYY-MM-DDTHH:MM:SS"), rebound as a whole


def _now() -> str:
    """The UTC time with microseconds, as `2026-11-26T07:05:00.123456Z`; formats the date once a second."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}Z"


# -- MQTT packets (what a QoS 1 subscriber sends and reads) -------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 13, 14  # packet types
_SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another connection took our client id's session
_PACKET_SLACK = 70_000  # bytes a PUBLISH may have besides its payload (topic up to 65535, properties)
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"  # 3.1.1; in MQTT 5 the same bytes mean "normal disconnection", session kept
_PUBACK = struct.Struct("!BBH")  # 0x40, remaining length 2, packet id (MQTT 5: reason "success" implied)
_SUBSCRIBE_ID = 1  # the one SUBSCRIBE of a connection

# MQTT 5 property ids -> how their value is encoded (to step over the ones we do not read)
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_KINDS = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _FOUR,
    0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}
_SERVER_KEEP_ALIVE, _REASON_STRING, _MAXIMUM_PACKET_SIZE = 0x13, 0x1F, 0x27


class ProtocolError(Exception):
    """The broker sent something a QoS 1 subscriber cannot take: the connection is dropped."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining lengths, property lengths)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """(value, position after it); raises IndexError when `data` ends inside it."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ProtocolError("variable byte integer longer than 4 bytes")


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect_packet(options: MqttOptions) -> bytes:
    """CONNECT of a persistent session: clean start/session off, session expiry and receive maximum (MQTT 5)."""
    v5 = options.protocol == 5
    flags = 0  # clean start (5) / clean session (3.1.1) off: the broker keeps our subscriptions and messages
    payload = _string(options.client_id)
    if options.username is not None:
        flags |= 0x80
        payload += _string(options.username)
    if options.password is not None:
        flags |= 0x40
        payload += _string(options.password)
    head = _string("MQTT") + bytes([5 if v5 else 4, flags]) + options.keepalive.to_bytes(2, "big")
    if v5:
        props = (b"\x11" + options.session_expiry.to_bytes(4, "big")
                 + b"\x21" + min(options.receive_maximum, 65535).to_bytes(2, "big"))
        if options.max_message_bytes:
            cap = min(options.max_message_bytes * 16 + _PACKET_SLACK, 268_435_455)
            props += bytes([_MAXIMUM_PACKET_SIZE]) + cap.to_bytes(4, "big")
        head += varint(len(props)) + props
    return _packet(CONNECT, 0, head + payload)


def publish_packet(topic: str, payload: bytes, qos: int, mid: int, v5: bool) -> bytes:
    """PUBLISH at QoS 0 or 1 (a command to a device)."""
    body = _string(topic) + (mid.to_bytes(2, "big") if qos else b"") + (b"\x00" if v5 else b"") + payload
    return _packet(PUBLISH, qos << 1, body)


def subscribe_packet(topics: list[str], v5: bool, qos: list[int] | None = None) -> bytes:
    """SUBSCRIBE to every topic at QoS 1 (or at the QoS `qos` gives each)."""
    body = _SUBSCRIBE_ID.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    for i, topic in enumerate(topics):
        body += _string(topic) + bytes([1 if qos is None else qos[i]])
    return _packet(SUBSCRIBE, 0x02, body)


def _properties(data: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """The MQTT 5 properties at `pos` that are numbers or strings, keyed by id; (properties, position after)."""
    length, pos = _read_varint(data, pos)
    end = pos + length
    found: dict[int, int | bytes] = {}
    while pos < end:
        prop = data[pos]
        kind = _PROPERTY_KINDS.get(prop)
        pos += 1
        if kind is None:
            raise ProtocolError(f"unknown MQTT 5 property 0x{prop:02x}")
        if kind in (_BYTE, _TWO, _FOUR):
            size = {_BYTE: 1, _TWO: 2, _FOUR: 4}[kind]
            found[prop] = int.from_bytes(data[pos:pos + size], "big")
            pos += size
        elif kind == _VARINT:
            found[prop], pos = _read_varint(data, pos)
        else:
            for _ in range(2 if kind == _PAIR else 1):
                size = int.from_bytes(data[pos:pos + 2], "big")
                found[prop] = data[pos + 2:pos + 2 + size]
                pos += 2 + size
    return found, end


@dataclass(frozen=True, slots=True)
class _Connack:
    session_present: bool
    code: int  # 0 = accepted
    keepalive: int | None  # the broker's Server Keep Alive (MQTT 5), None = ours
    reason: str


def _connack(body: bytes, v5: bool) -> _Connack:
    props: dict[int, int | bytes] = _properties(body, 2)[0] if v5 and len(body) > 2 else {}
    keepalive = props.get(_SERVER_KEEP_ALIVE)
    reason = props.get(_REASON_STRING, b"")
    return _Connack(bool(body[0] & 1), body[1], keepalive if isinstance(keepalive, int) else None,
                    reason.decode(errors="replace") if isinstance(reason, bytes) else "")


def _suback_codes(body: bytes, v5: bool) -> bytes:
    return body[_properties(body, 2)[1]:] if v5 else body[2:]


# -- one connection ---------------------------------------------------------------------------

Route = tuple[str, str, str, str | None, str, bool]  # protocol, apikey, device_id, attribute, topic, is cmdexe


class _Connection(asyncio.Protocol):
    """One TCP connection to the MQTT broker: parses what arrives, sends the PUBACKs of a commit at once."""

    def __init__(self, owner: MqttTransport, v5: bool) -> None:
        self._owner = owner
        self._v5 = v5
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""  # the start of a packet that has not fully arrived yet
        self._acks: list[int] = []
        self.connack: asyncio.Future[_Connack] = self._loop.create_future()
        self.suback: asyncio.Future[bytes] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.last_received = time.monotonic()
        self.taken_over = False  # the broker said another connection took our session (MQTT 5 0x8E)
        self._skip = 0  # bytes of an oversized PUBLISH still to discard as they arrive
        self._limit = owner.options.max_message_bytes
        self._published: dict[int, asyncio.Future[None]] = {}  # our QoS 1 PUBLISHes waiting for their PUBACK
        self._next_mid = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # any loop's stream transport: uvloop's TCPTransport and SSL transport are not asyncio.Transport
        # subclasses, yet have every method this uses (write, is_reading, pause/resume_reading, close, abort)
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        waiting: list[asyncio.Future[Any]] = [self.connack, self.suback, *self._published.values()]
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError(f"connection lost: {exc or 'closed by the broker'}"))
        self._published.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        if self._skip:  # the rest of an oversized message: dropped as it comes
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
            if not data:
                return
        if self._buffer:
            data = self._buffer + data
        try:
            used = self._packets(data)
        except (ProtocolError, IndexError) as exc:  # IndexError: a packet shorter than its own fields say
            log.error("MQTT protocol error, dropping the connection: %s", exc or type(exc).__name__)
            self.abort()
            return
        self._buffer = data[used:]
        self._owner._throttle(self)

    def pause(self, paused: bool) -> None:
        """Stop (or resume) reading: TCP back-pressure leaves the messages with the broker meanwhile."""
        if self._transport is not None and self._transport.is_reading() == paused:
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    # -- reading -----------------------------------------------------------------------------

    def _packets(self, data: bytes) -> int:
        """Handle every complete packet of `data`; return how many bytes they took."""
        received = [0, 0]  # PUBLISH packets at QoS 0 and 1: counted once per read, not per message
        pos, end = 0, len(data)
        while end - pos >= 2:
            length, start = data[pos + 1], pos + 2
            if length & 0x80:  # a remaining length of more than one byte (packets of 128 bytes or more)
                try:
                    length, start = _read_varint(data, pos + 1)
                except IndexError:  # the remaining length itself is not all there yet
                    break
            stop = start + length
            if stop > end:
                if self._limit and length > self._limit + _PACKET_SLACK and data[pos] >> 4 == PUBLISH \
                        and self._oversized(data, pos, start, stop, end):
                    received[(data[pos] >> 1) & 1] += 1
                    pos = end
                break
            first = data[pos]
            if first >> 4 == PUBLISH:
                self._publish(first, data, start, stop)
                received[(first >> 1) & 1] += 1
            else:
                self._control(first >> 4, data[start:stop])
            pos = stop
        self._owner._count(received)
        return pos

    def _oversized(self, data: bytes, pos: int, start: int, stop: int, end: int) -> bool:
        """Take the start of a PUBLISH too large to hold and discard the rest as it arrives.

        False while even its topic and packet id have not all arrived (the caller waits for more).
        """
        first = data[pos]
        qos = (first >> 1) & 3
        if end - start < 2:
            return False
        head = start + 2 + ((data[start] << 8) | data[start + 1]) + (2 if qos else 0)
        if head > end:
            return False
        if self._v5:
            try:
                length, head = _read_varint(data, head)
            except IndexError:
                return False
            head += length
            if head > end:
                return False
        # the message goes on to the intake with its start only, and its real size: it is rejected there
        self._skip = stop - end
        self._publish(first, data, start, min(end, head + self._limit + 1), size=stop - head)
        return True

    def _publish(self, first: int, data: bytes, start: int, stop: int, size: int = -1) -> None:
        qos = (first >> 1) & 3
        if qos == 2:  # we subscribe at QoS 1: a broker never sends more
            raise ProtocolError("PUBLISH at QoS 2 on a QoS 1 subscription")
        pos = start + 2 + ((data[start] << 8) | data[start + 1])
        topic = data[start + 2:pos]
        mid = 0
        if qos:
            mid = (data[pos] << 8) | data[pos + 1]
            pos += 2
        if self._v5:
            length, pos = _read_varint(data, pos)
            pos += length
        if qos and first & 0x08:  # DUP: perhaps one we committed and could not acknowledge
            self._owner._on_redelivery(self, topic, mid, data[pos:stop], size)
        else:
            self._owner._on_publish(self, topic, qos, mid, data[pos:stop], size)

    def _control(self, kind: int, body: bytes) -> None:
        if kind == CONNACK and not self.connack.done():
            self.connack.set_result(_connack(body, self._v5))
        elif kind == SUBACK and not self.suback.done():
            self.suback.set_result(_suback_codes(body, self._v5))
        elif kind == PINGRESP:
            pass  # last_received is all a PINGRESP is for
        elif kind == PUBACK:
            waiting = self._published.pop(int.from_bytes(body[:2], "big"), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            if reason == _SESSION_TAKEN_OVER:
                self.taken_over = True
                log.error("the MQTT broker gave our session to another connection with the same client id %r"
                          " (MQTT 5 reason 0x8E, session taken over): two agents use one client id; give each"
                          " installation its own (METROPOLE_AGENT_MQTT_CLIENT_ID, or leave it unset)",
                          self._owner.options.client_id)
            else:
                log.warning("the MQTT broker disconnected us (reason 0x%02x)", reason)
            self.abort()
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    # -- writing -----------------------------------------------------------------------------

    @property
    def reading(self) -> bool:
        """False while paused (see pause): the broker's silence then tells nothing."""
        return self._transport is not None and self._transport.is_reading()

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, packet: bytes) -> None:
        if self.open:
            assert self._transport is not None
            self._transport.write(packet)

    def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        """Send a PUBLISH; the future is done when it is on its way (QoS 0) or acknowledged (QoS 1)."""
        future: asyncio.Future[None] = self._loop.create_future()
        if not self.open:
            future.set_exception(ConnectionError("not connected to the MQTT broker"))
            return future
        mid = 0
        if qos:
            self._next_mid = self._next_mid % 65535 + 1
            mid = self._next_mid
            self._published[mid] = future
        self.send(publish_packet(topic, payload, qos, mid, self._v5))
        if not qos:
            future.set_result(None)
        return future

    def done(self, mid: int, ok: bool) -> None:
        """Intake callback of one QoS 1 message: queue its PUBACK (not ok: none, the broker sends it again)."""
        if ok and self.open:
            if not self._acks:  # the first of a commit's acknowledgements: write them all once it is over
                self._loop.call_soon(self._flush_acks)
            self._acks.append(mid)

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        pack = _PUBACK.pack
        self.send(b"".join([pack(0x40, 2, mid) for mid in acks]))

    def disconnect(self) -> None:
        """Leave cleanly: acknowledgements still queued, then DISCONNECT (the session stays with the broker)."""
        if self._acks:
            self._flush_acks()
        self.send(_DISCONNECT)
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _ignore_ack(_ok: bool) -> None:
    """The intake callback of a QoS 0 message: there is nothing to acknowledge."""


# -- the transport ----------------------------------------------------------------------------

class MqttTransport:
    """Subscribes to the measure topics and hands each message to the intake (in the intake's event loop)."""

    #: topics whose parse is remembered (devices publish on the same few topics over and over)
    route_cache_max = 100_000
    #: committed QoS 1 messages remembered to recognise their redelivery (above any broker's inflight window)
    redelivery_window = 20_000

    def __init__(self, options: MqttOptions, intake: Intake, *, metrics: Metrics | None = None,
                 command_results: CommandResults | None = None) -> None:
        self.options = options
        self._intake = intake
        self._command_results = command_results
        self._connections = 0  # connections this process made (the first may resume a session of a past run)
        self._short_lived = 0  # connections in a row the broker closed right after they opened
        self.connected = threading.Event()  # set while subscribed (threads may wait on it)
        m = metrics or Metrics()
        self._m_messages = m.counter("metropole_agent_mqtt_messages_total", "MQTT messages received, by QoS", ["qos"])
        self._m_by_qos: dict[int, Callable[..., None]] = {}  # qos -> its child's inc, made on first use
        self._m_ignored = m.counter("metropole_agent_mqtt_ignored_total", "MQTT messages on topics that are not measures")
        self._m_redelivered = m.counter("metropole_agent_mqtt_redeliveries_total",
                                        "MQTT redeliveries (DUP) of messages already committed: acknowledged, not taken again")
        self._committed: OrderedDict[tuple[int, bytes, int], None] = OrderedDict()  # (mid, topic, hash of the payload)
        self._committing: dict[tuple[int, bytes, int], list[Callable[[bool], None]]] = {}
        self._m_connected = m.gauge("metropole_agent_mqtt_connected", "1 while connected to the MQTT broker")
        self._v5 = options.protocol == 5
        self._routes: dict[bytes, Route | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._connection: _Connection | None = None
        self._closing = False
        intake.on_commit(self._resume)

    def topics(self) -> list[str]:
        """The subscription filters, with the shared-subscription prefix when configured."""
        prefix = f"$share/{self.options.share_group}/" if self.options.share_group else ""
        topics = MEASURE_TOPICS + (COMMAND_RESULT_TOPICS if self._command_results is not None else ())
        return [prefix + t for t in topics]

    def topic_qos(self, topic: str) -> int:
        """The QoS a filter is subscribed at: 1 (a subclass may ask less of a broker that offers less)."""
        return 1

    async def publish(self, topic: str, payload: bytes, qos: int = 0, timeout: float = 10.0) -> None:
        """Publish (a command to a device); raises ConnectionError when not connected or not acknowledged."""
        conn = self._connection
        if conn is None or not self.connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")
        try:
            await asyncio.wait_for(conn.publish(topic, payload, qos), timeout)
        except TimeoutError:
            raise ConnectionError(f"the MQTT broker did not acknowledge a PUBLISH on {topic} in {timeout}s") from None

    def start(self) -> None:
        """In the running loop: connect (retrying in the background until the broker answers) and subscribe."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._task = self._loop.create_task(self._run(), name="agent-mqtt")

    async def aclose(self) -> None:
        """Disconnect; unacknowledged messages stay with the broker for the next session."""
        self._closing = True
        if self._connection is not None:
            self._connection.disconnect()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._set_connected(False)

    def stop(self) -> None:
        """`aclose` from another thread (the transport lives in its event loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("MqttTransport.stop() blocks: in its own event loop, await aclose()")
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=30)

    # -- connection management -----------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve the connection until it drops, wait, connect again; until aclose()."""
        delay = self.options.reconnect_min
        failures = 0
        while not self._closing:
            try:
                await self._serve()
                delay, failures = self.options.reconnect_min, 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - refused, unreachable, protocol error: try again later
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "MQTT broker %s:%s: %s (retrying every %.0f-%.0fs)", self.options.host,
                        self.options.port, str(exc) or type(exc).__name__,  # an empty message (a timeout) named
                        self.options.reconnect_min, self.options.reconnect_max)
            finally:
                self._connection = None
                self._set_connected(False)
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(self.options.reconnect_max, delay * 2)

    async def _serve(self) -> None:
        """One connection: CONNECT, SUBSCRIBE, then keep it alive until it closes."""
        assert self._loop is not None
        o = self.options
        _, conn = await asyncio.wait_for(
            self._loop.create_connection(lambda: _Connection(self, self._v5), o.host, o.port, ssl=o.tls,
                                         server_hostname=o.host if o.tls is not None else None), timeout=10)
        self._connection = conn
        try:
            conn.send(connect_packet(o))
            ack = await asyncio.wait_for(conn.connack, timeout=10)
            if ack.code:
                raise ConnectionRefusedError(f"the broker refused the connection (code 0x{ack.code:02x}"
                                             f"{': ' + ack.reason if ack.reason else ''})")
            topics = self.topics()
            conn.send(subscribe_packet(topics, self._v5, [self.topic_qos(t) for t in topics]))
            codes = await asyncio.wait_for(conn.suback, timeout=10)
            refused = [t for t, code in zip(self.topics(), codes) if code >= 0x80]
            if refused:
                log.warning("the MQTT broker refused the subscriptions %s", refused)
            self._connections += 1
            log.info("connected to MQTT broker %s:%s as %r (session present: %s)", o.host, o.port, o.client_id,
                     ack.session_present)
            if self._connections == 1 and ack.session_present:
                log.warning("resumed the persistent MQTT session of client id %r that the broker kept from an earlier"
                            " connection: the measures queued meanwhile arrive now. If no agent of this installation"
                            " ran before, another one uses the same client id", o.client_id)
            self._set_connected(True)
            opened = time.monotonic()
            keepalive = o.keepalive if ack.keepalive is None else ack.keepalive
            await self._keep_alive(conn, keepalive)
            if not self._closing:
                self._closed_early(conn, time.monotonic() - opened)
                log.warning("disconnected from MQTT broker %s:%s (reconnecting)", o.host, o.port)
        finally:
            if conn.open:  # aclose() closes it gracefully itself (PUBACKs and DISCONNECT still to flush)
                conn.abort()
            for step in (conn.connack, conn.suback):  # a handshake cut short is reported once, by _run
                if step.done() and not step.cancelled():
                    step.exception()

    def _closed_early(self, conn: _Connection, lasted: float) -> None:
        """Tell a session take-over in MQTT 3.1.1, where the broker just closes the connection it took over."""
        if conn.taken_over or lasted > 5.0:
            self._short_lived = 0
            return
        self._short_lived += 1
        if self._short_lived in (2, 10, 100):
            log.error("the MQTT broker closed %d connections in a row within seconds of opening them: another client"
                      " probably uses our client id %r and takes the session from us (give each installation its"
                      " own: METROPOLE_AGENT_MQTT_CLIENT_ID, or leave it unset)", self._short_lived,
                      self.options.client_id)

    @staticmethod
    async def _keep_alive(conn: _Connection, keepalive: int) -> None:
        """PINGREQ every keepalive/2 s; a broker silent since the previous one is gone: drop the connection."""
        if keepalive <= 0:
            await conn.closed
            return
        interval = keepalive / 2
        pinged_at: float | None = None
        while not conn.closed.done():
            await asyncio.wait([conn.closed], timeout=interval)
            if conn.closed.done():
                return
            if pinged_at is not None and conn.last_received < pinged_at and conn.reading:
                log.warning("the MQTT broker did not answer for %.0fs: reconnecting", interval)
                conn.abort()
                return
            pinged_at = time.monotonic()
            conn.send(_PINGREQ)

    def _throttle(self, conn: _Connection) -> None:
        """Stop reading while the intake has more than max_backlog messages to commit.

        Brokers do not all hold back at our receive maximum (Mosquitto sent a
        whole backlog at once): without this, a backlog moved into the agent's
        memory instead of staying with the broker.
        """
        if self._intake.backlog >= self.options.max_backlog:
            conn.pause(True)

    def _resume(self) -> None:
        """After a commit: read again once the intake's backlog is down to half of max_backlog."""
        conn = self._connection
        if conn is not None and self._intake.backlog <= self.options.max_backlog // 2:
            conn.pause(False)

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        self._m_connected.set(1 if up else 0)

    # -- messages --------------------------------------------------------------------------------

    def _route(self, topic: bytes) -> Route | None:
        """What a topic says (protocol, apikey, device, attribute), None when it is not a measure topic."""
        try:
            route = self._routes[topic]
        except KeyError:
            try:
                text = topic.decode()
            except UnicodeDecodeError:
                route = None
            else:
                parsed = parse_topic(text)
                route = None if parsed is None else (*parsed, text, False)
                if parsed is None and self._command_results is not None:
                    command = parse_command_result_topic(text)
                    route = None if command is None else (*command, None, text, True)
            if len(self._routes) >= self.route_cache_max:
                self._routes.clear()
            self._routes[topic] = route
        return route

    def _count(self, received: list[int]) -> None:
        """Count the PUBLISH packets of one read, by QoS."""
        for qos, n in enumerate(received):
            if n:
                count = self._m_by_qos.get(qos)
                if count is None:
                    count = self._m_by_qos[qos] = self._m_messages.labels(qos=qos).inc
                count(n)

    def _on_redelivery(self, conn: _Connection, topic: bytes, mid: int, payload: bytes, size: int) -> None:
        """A QoS 1 PUBLISH with DUP set: acknowledge it if its first copy was committed, else take it in."""
        key = (mid, topic, hash(payload))
        if key in self._committed:
            self._m_redelivered.inc()
            conn.done(mid, True)
            return
        waiting = self._committing.get(key)
        if waiting is not None:  # its first copy (from the connection before) is still being committed
            self._m_redelivered.inc()
            waiting.append(partial(conn.done, mid))
            return
        self._committing[key] = []
        self._on_publish(conn, topic, 1, mid, payload, size, key)

    def _committed_done(self, conn: _Connection, mid: int, key: tuple[int, bytes, int], ok: bool) -> None:
        waiting = self._committing.pop(key, ())
        if ok:
            committed = self._committed
            committed[key] = None
            if len(committed) > self.redelivery_window:
                committed.popitem(last=False)
        conn.done(mid, ok)
        for done in waiting:
            done(ok)

    def _ack(self, conn: _Connection, qos: int, mid: int, topic: bytes, payload: bytes,
             key: tuple[int, bytes, int] | None) -> Callable[[bool], None]:
        """The intake callback of a message: its PUBACK, and remembering it against a redelivery."""
        if not qos:
            return _ignore_ack
        if key is None:
            key = (mid, topic, hash(payload))
            self._committing[key] = []
        return partial(self._committed_done, conn, mid, key)

    def _on_publish(self, conn: _Connection, topic: bytes, qos: int, mid: int, payload: bytes, size: int = -1,
                    key: tuple[int, bytes, int] | None = None) -> None:
        done = self._ack(conn, qos, mid, topic, payload, key)
        route = self._route(topic)
        if route is None:
            self._m_ignored.inc()
            done(True)
            return
        protocol, apikey, device_id, attribute, text, is_result = route
        if is_result:
            assert self._command_results is not None
            task: asyncio.Future[None] = asyncio.ensure_future(
                self._command_results(protocol or _sniff(payload), apikey, device_id, payload))
            task.add_done_callback(lambda t: done(not t.cancelled() and t.exception() is None))
            return
        inbound = Inbound("mqtt", protocol or _sniff(payload), apikey, device_id, payload, _now(), attribute, text,
                          size)
        self._intake.submit(inbound, done)
