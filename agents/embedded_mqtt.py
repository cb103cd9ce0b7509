"""A small embedded MQTT 3.1.1 broker, started when no broker answers (a fresh laptop).

`make run` expects Mosquitto on 127.0.0.1:1883; where nothing answers there,
`ensure_mqtt_broker` starts this one in the running asyncio loop so the README
still works. It is enough for one machine: QoS 0 and 1 (QoS 2 is accepted and
delivered at QoS 1), persistent sessions (`clean_session=0`: subscriptions and
unacknowledged or queued QoS 1 messages survive a reconnect, in memory), `+`/`#`
wildcards, retained messages, shared subscriptions (`$share/<group>/<filter>`),
keep-alive. It has no authentication, TLS, MQTT 5 or persistence across its
own restarts: production uses Mosquitto (or any MQTT broker).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
from collections import deque
from dataclasses import dataclass, field

__all__ = ["EmbeddedMqttBroker", "broker_answers", "ensure_mqtt_broker"]

log = logging.getLogger("metropole.agents.embedded_mqtt")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
MAX_INFLIGHT = 100


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT filter matching (+ one level, # the rest); $-topics only match filters starting with $."""
    if topic.startswith("$") != filter_.startswith("$"):
        return False
    f, t = filter_.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def _utf8(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + n].decode("utf-8"), pos + 2 + n


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([(kind << 4) | flags]) + bytes(length) + body


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(slots=True)
class _Session:
    client_id: str
    clean: bool
    subs: dict[str, int] = field(default_factory=dict)  # filter (shared ones with their $share prefix) -> qos
    inflight: dict[int, _Message] = field(default_factory=dict)
    queued: deque[_Message] = field(default_factory=deque)
    writer: asyncio.StreamWriter | None = None
    mids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_mid(self) -> int:
        while True:
            mid = next(self.mids) % 65535 + 1
            if mid not in self.inflight:
                return mid


class EmbeddedMqttBroker:
    """An asyncio MQTT 3.1.1 broker for one machine (see the module docstring for its limits)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, _Message] = {}
        self._rr = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on host:port."""
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded MQTT broker on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            for s in self._sessions.values():
                if s.writer is not None:
                    s.writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    # -- connections -------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        head = await reader.readexactly(1)
        mult, length = 1, 0
        while True:
            (b,) = await reader.readexactly(1)
            length += (b & 0x7F) * mult
            if not b & 0x80:
                break
            mult *= 128
        return head[0] >> 4, head[0] & 0x0F, await reader.readexactly(length)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session: _Session | None = None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            kind, _, body = await asyncio.wait_for(self._read(reader), 10)
            if kind != CONNECT:
                return
            session, keepalive = self._connect(body, writer)
            timeout = keepalive * 1.5 if keepalive else None
            while True:
                kind, flags, body = await asyncio.wait_for(self._read(reader), timeout)
                if kind == DISCONNECT:
                    break
                self._handle(session, kind, flags, body)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, UnicodeDecodeError, asyncio.CancelledError):
            pass
        finally:
            if session is not None and session.writer is writer:
                session.writer = None
                if session.clean:
                    self._sessions.pop(session.client_id, None)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _connect(self, body: bytes, writer: asyncio.StreamWriter) -> tuple[_Session, int]:
        _, pos = _utf8(body, 0)  # protocol name (MQTT / MQIsdp)
        level, flags = body[pos], body[pos + 1]
        (keepalive,) = struct.unpack_from("!H", body, pos + 2)
        client_id, _ = _utf8(body, pos + 4)
        clean = bool(flags & 0x02)
        if level not in (3, 4):
            writer.write(_packet(CONNACK, 0, b"\x00\x01"))  # unacceptable protocol version
            raise ValueError("unsupported MQTT protocol level")
        if not client_id:
            client_id = f"anon-{id(writer)}"
        old = self._sessions.get(client_id)
        if old is not None and old.writer is not None:
            old.writer.close()  # the same client id takes over
        present = old is not None and not clean
        session = old if present else _Session(client_id, clean)
        assert session is not None
        session.clean, session.writer = clean, writer
        self._sessions[client_id] = session
        writer.write(_packet(CONNACK, 0, bytes([1 if present else 0, 0])))
        for mid, msg in list(session.inflight.items()):  # resend unacknowledged, DUP set
            writer.write(self._publish_packet(msg, 1, mid, dup=True))
        self._pump(session)
        return session, keepalive

    def _handle(self, session: _Session, kind: int, flags: int, body: bytes) -> None:
        w = session.writer
        assert w is not None
        if kind == PUBLISH:
            qos, retain = (flags >> 1) & 3, bool(flags & 1)
            topic, pos = _utf8(body, 0)
            mid = 0
            if qos:
                (mid,) = struct.unpack_from("!H", body, pos)
                pos += 2
            self._route(_Message(topic, body[pos:], min(qos, 1), retain))
            if qos == 1:
                w.write(_packet(PUBACK, 0, struct.pack("!H", mid)))
            elif qos == 2:
                w.write(_packet(PUBREC, 0, struct.pack("!H", mid)))
        elif kind == PUBACK:
            (mid,) = struct.unpack_from("!H", body, 0)
            session.inflight.pop(mid, None)
            self._pump(session)
        elif kind == PUBREL:
            w.write(_packet(PUBCOMP, 0, body[:2]))
        elif kind == SUBSCRIBE:
            (mid,) = struct.unpack_from("!H", body, 0)
            pos, granted, new = 2, bytearray(), []
            while pos < len(body):
                filter_, pos = _utf8(body, pos)
                qos = min(body[pos], 1)
                pos += 1
                session.subs[filter_] = qos
                granted.append(qos)
                new.append(filter_)
            w.write(_packet(SUBACK, 0, struct.pack("!H", mid) + bytes(granted)))
            for filter_ in new:
                if not filter_.startswith("$share/"):
                    for msg in self._retained.values():
                        if topic_matches(filter_, msg.topic):
                            self._enqueue(session, _Message(msg.topic, msg.payload, min(msg.qos, session.subs[filter_]), True))
        elif kind == UNSUBSCRIBE:
            (mid,) = struct.unpack_from("!H", body, 0)
            pos = 2
            while pos < len(body):
                filter_, pos = _utf8(body, pos)
                session.subs.pop(filter_, None)
            w.write(_packet(UNSUBACK, 0, struct.pack("!H", mid)))
        elif kind == PINGREQ:
            w.write(_packet(PINGRESP, 0, b""))

    # -- routing -------------------------------------------------------------------------

    def _route(self, msg: _Message) -> None:
        if msg.retain:
            if msg.payload:
                self._retained[msg.topic] = msg
            else:
                self._retained.pop(msg.topic, None)
        shared: dict[tuple[str, str], list[tuple[_Session, int]]] = {}
        for session in list(self._sessions.values()):
            best = -1
            for filter_, qos in session.subs.items():
                if filter_.startswith("$share/"):
                    _, group, real = filter_.split("/", 2)
                    if topic_matches(real, msg.topic):
                        shared.setdefault((group, real), []).append((session, qos))
                elif topic_matches(filter_, msg.topic):
                    best = max(best, qos)
            if best >= 0:
                self._enqueue(session, _Message(msg.topic, msg.payload, min(msg.qos, best)))
        for members in shared.values():
            online = [m for m in members if m[0].writer is not None] or members
            session, qos = online[next(self._rr) % len(online)]
            self._enqueue(session, _Message(msg.topic, msg.payload, min(msg.qos, qos)))

    def _enqueue(self, session: _Session, msg: _Message) -> None:
        if msg.qos == 0:
            if session.writer is not None:
                session.writer.write(self._publish_packet(msg, 0, 0))
            return
        session.queued.append(msg)
        self._pump(session)

    def _pump(self, session: _Session) -> None:
        while session.writer is not None and session.queued and len(session.inflight) < MAX_INFLIGHT:
            msg = session.queued.popleft()
            mid = session.next_mid()
            session.inflight[mid] = msg
            session.writer.write(self._publish_packet(msg, 1, mid))

    @staticmethod
    def _publish_packet(msg: _Message, qos: int, mid: int, *, dup: bool = False) -> bytes:
        flags = (qos << 1) | (0x08 if dup else 0) | (1 if msg.retain else 0)
        body = _str(msg.topic) + (struct.pack("!H", mid) if qos else b"") + msg.payload
        return _packet(PUBLISH, flags, body)


async def ensure_mqtt_broker(host: str, port: int) -> EmbeddedMqttBroker | None:
    """Start an embedded broker on host:port unless one already answers there; return it (or None)."""
    if await asyncio.to_thread(broker_answers, host, port):
        return None
    broker = EmbeddedMqttBroker(host, port)
    await broker.start()
    return broker
