"""A light MQTT 3.1.1 load generator for the IoT agent benchmark, and a private Mosquitto to aim it at.

    python -m bench.mqtt_load [--total 200000] [--publishers 1] [--rate R] [--mosquitto own|system]

paho-mqtt builds, queues and tracks each message in Python, which caps one
publisher at a few thousand QoS 1 messages/s: below what the agent takes.
Here each publisher is a process speaking MQTT over a raw socket: every
PUBLISH packet (topic, packet id, payload) is encoded before the clock starts,
then written hundreds at a time in one `send`, while a select loop counts the
PUBACKs, keeping at most `window` messages unacknowledged (QoS 1 flow control,
as paho's max_inflight_messages does).

The messages are those of `ingest_bench`: message i goes to device
`d{i % devices}` on `/json/<apikey>/<device>/attrs` with `{"no2": base + i // devices}`,
so a value seen in the NGSI-LD broker tells which message it was. With
`kind="tts"` they are The Things Stack v3 uplinks instead, on
`v3/<application>/devices/t<n>/up`: the documented uplink envelope
(agents/lorawan/tts_vectors.json) carrying Decentlab's DL-PM example frame
whose PM10 word is the value (so the entity's pm10 is value / 10), DevEUI
70B3D57E followed by the device number in hex. Publisher k
of K sends the messages of the devices whose number is k modulo K, in order,
so each device's measures keep their order (one connection per device). At a
fixed rate, message i is due at t0 + i / rate (one schedule shared by all
publishers), sent in slices of at least SLICE seconds; flat out, as fast as
the window allows. Each publisher hands back the wall-clock time at which each
of its messages was written, for the benchmark's latency samples.

Run alone (the module's command line) it measures the publisher against a
Mosquitto with no subscriber: its own (`--mosquitto own`, the default) or
METROPOLE_TEST_MQTT_HOST/_PORT (`--mosquitto system`).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from agents.transports.mqtt import varint

__all__ = ["Load", "LoadResult", "LoadSpec", "Mosquitto", "dev_eui", "message_indices"]

MOSQUITTO = "/usr/sbin/mosquitto"
BATCH = 512  # messages per socket write (about 40 kB with the bench's topics and payloads)
SLICE = 0.001  # seconds: the shortest wait between two paced writes
PUBACK = b"\x40"  # fixed header byte of a PUBACK; each one is 4 bytes: 0x40 0x02 <packet id>


# -- MQTT 3.1.1 encoding ----------------------------------------------------------------

def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str) -> bytes:
    """CONNECT with a clean session and keep-alive 0: the broker never times out a silent publisher."""
    body = _string(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _string(client_id.encode())
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH at QoS 1 (fixed header 0x32)."""
    body = _string(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + varint(len(body)) + body


def packet_id(j: int) -> int:
    """The id of a publisher's j-th message: 1..65535 in turn (ids are reused once acknowledged)."""
    return j % 65535 + 1


DISCONNECT = b"\xe0\x00"


# -- one publisher process ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to publish, where, and how fast."""

    host: str
    port: int
    apikey: str
    devices: int
    total: int
    rate: float | None = None  # messages/s for all publishers together; None: flat out
    value_base: int = 0  # first no2 value, so that successive runs never repeat a (device, value)
    window: int = 1000  # unacknowledged messages allowed per publisher (at most 65535: the packet ids)
    timeout: float = 120.0  # seconds after the start at which a publisher gives up
    kind: str = "json"  # "json": the agent's JSON measures; "tts": The Things Stack uplinks (the module's docstring)
    application: str = ""  # kind "tts": the application, `app@tenant`
    same_stamp: bool = False  # kind "json": every message the same TimeInstant (the build time), as before 2026-12-06

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 65535:
            raise ValueError(f"window {self.window}: from 1 to 65535 (the packet ids in flight must differ)")


@dataclass(slots=True)
class LoadResult:
    """What the publishers achieved; `send_times[i]` is the time message i was written (0: never)."""

    total: int
    sent: int
    acked: int
    t0: float
    last_ack: float
    send_times: array[float]
    errors: list[str]

    @property
    def rate(self) -> float:
        """Messages PUBACKed per second, from the start to the last PUBACK."""
        return self.acked / max(1e-9, self.last_ack - self.t0)


def message_indices(total: int, devices: int, k: int, publishers: int) -> list[int]:
    """The messages (global indices, in order) of publisher k: those of the devices numbered k modulo K."""
    return [i for i in range(total) if i % devices % publishers == k]


#: Decentlab's DL-PM example 1 (agents/codecs/decentlab/dl_pm_vectors.json); bytes 13-14 are its PM10 word
DL_PM = bytes.fromhex("021b50000f0c25002500270027002701f50107012c012d012d012d67bd618dbd10")
PM10_WORD = 13


def dev_eui(device: int) -> str:
    """The DevEUI of bench device number `device`."""
    return f"70B3D57E{device:08X}"


def _tts_payloads(spec: LoadSpec, indices: list[int]) -> list[bytes]:
    """TTS uplinks (pre-encoded: orjson once per message, before the clock starts)."""
    import base64

    import orjson

    vectors = Path(__file__).resolve().parent.parent / "agents" / "lorawan" / "tts_vectors.json"
    envelope = orjson.loads(vectors.read_bytes())["uplinks"][0]["body"]
    app = spec.application.partition("@")[0]
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = []
    for j, i in enumerate(indices):
        device = i % spec.devices
        frame = bytearray(DL_PM)
        frame[PM10_WORD:PM10_WORD + 2] = ((spec.value_base + i // spec.devices) % 65536).to_bytes(2, "big")
        body = {**envelope, "received_at": stamp,
                "end_device_ids": {"device_id": f"t{device}", "dev_eui": dev_eui(device),
                                   "application_ids": {"application_id": app}},
                "uplink_message": {**envelope["uplink_message"], "f_port": 1, "f_cnt": i // spec.devices,
                                   "frm_payload": base64.b64encode(bytes(frame)).decode(), "received_at": stamp}}
        body["uplink_message"].pop("decoded_payload", None)
        topic = f"v3/{spec.application}/devices/t{device}/up".encode()
        out.append(publish_packet(topic, packet_id(j), orjson.dumps(body)))
    return out


def _payloads(spec: LoadSpec, indices: list[int]) -> list[bytes]:
    if spec.kind == "tts":
        return _tts_payloads(spec, indices)
    prefix = f"/json/{spec.apikey}/d".encode()
    # The payloads are encoded before the clock starts. Each message's TimeInstant is its own, as a device
    # stamps each measure: the build time plus the message's place in the schedule (i / rate; flat out,
    # i microseconds), so that history appends an instance per measure. With one stamp for every message
    # (`same_stamp`, the load before 2026-12-06) each device's measures share one observedAt and history
    # replaces one stored instance again and again instead (sqlitee2e18's finding).
    built = datetime.now(UTC)
    if spec.same_stamp:
        stamp = built.isoformat().encode()
        return [publish_packet(b"%s%d/attrs" % (prefix, i % spec.devices), packet_id(j),
                               b'{"no2":%d,"TimeInstant":"%s"}' % (spec.value_base + i // spec.devices, stamp))
                for j, i in enumerate(indices)]
    step = 1.0 / spec.rate if spec.rate else 1e-6
    return [publish_packet(b"%s%d/attrs" % (prefix, i % spec.devices), packet_id(j),
                           b'{"no2":%d,"TimeInstant":"%s"}' % (spec.value_base + i // spec.devices,
                                                                (built + timedelta(seconds=i * step)).isoformat().encode()))
            for j, i in enumerate(indices)]


def _connect(spec: LoadSpec) -> socket.socket:
    sock = socket.create_connection((spec.host, spec.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # paced slices leave at once
    sock.sendall(connect_packet(f"bench-load-{uuid.uuid4().hex[:8]}"))
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        if not chunk:
            raise ConnectionError("MQTT broker closed the connection before CONNACK")
        connack += chunk
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"MQTT CONNACK refused: {connack.hex()}")
    sock.setblocking(False)
    return sock


def _publish(sock: socket.socket, spec: LoadSpec, packets: list[bytes], offsets: array[float] | None,
             t0: float) -> tuple[int, int, float, array[float], str | None]:
    """Send the packets on schedule within the window; (sent, acked, last PUBACK time, send times, error)."""
    n = len(packets)
    times = array("d", bytes(8 * n))
    sent = acked = 0
    last_ack = t0
    pending: memoryview | None = None  # the part of the current write the socket has not taken yet
    rest = b""  # a PUBACK cut in two by recv
    deadline = t0 + spec.timeout
    try:
        while acked < n:
            now = time.time()
            if now > deadline:
                return sent, acked, last_ack, times, f"timed out after {spec.timeout:.0f} s"
            due = n if offsets is None else bisect.bisect_right(offsets, now - t0)
            limit = min(due, acked + spec.window)
            if pending is None and sent < limit:
                end = min(limit, sent + BATCH)
                pending = memoryview(b"".join(packets[sent:end]))
                times[sent:end] = array("d", [now]) * (end - sent)
                sent = end
            if pending is not None:
                with contextlib.suppress(BlockingIOError):  # the socket buffer is full: select waits
                    pending = pending[sock.send(pending):] or None
            if pending is not None:
                readable, _, _ = select.select([sock], [sock], [], 1.0)
            elif sent < due:  # the window is full: only a PUBACK can let more go
                readable, _, _ = select.select([sock], [], [], 1.0)
            elif sent < n:  # paced: wait for the next message's time, but at least a slice
                assert offsets is not None
                wait = max(SLICE, offsets[sent] - (time.time() - t0))
                readable, _, _ = select.select([sock], [], [], wait)
            else:
                readable, _, _ = select.select([sock], [], [], 1.0)
            if not readable:
                continue
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                return sent, acked, last_ack, times, "MQTT broker closed the connection"
            data = rest + data
            count = len(data) // 4
            # Mosquitto acknowledges one connection's QoS 1 messages in order: check the type
            # byte of every packet and the id of the last one.
            if data[0:4 * count:4] != PUBACK * count or (
                    count and int.from_bytes(data[4 * count - 2:4 * count], "big") != packet_id(acked + count - 1)):
                return sent, acked, last_ack, times, f"unexpected packet from the MQTT broker: {data[:16].hex()}"
            acked += count
            rest = data[4 * count:]
            if count:
                last_ack = time.time()
    except OSError as exc:
        return sent, acked, last_ack, times, f"{type(exc).__name__}: {exc}"
    return sent, acked, last_ack, times, None


def _publisher(spec: LoadSpec, k: int, publishers: int, conn: Connection) -> None:
    """Process body: build, connect, say ready, wait for t0, publish, send back what _publish returns."""
    indices = message_indices(spec.total, spec.devices, k, publishers)
    packets = _payloads(spec, indices)
    offsets = array("d", (i / spec.rate for i in indices)) if spec.rate else None
    try:
        sock = _connect(spec)
    except OSError as exc:
        conn.send(str(exc))
        return
    conn.send("ready")
    t0: float = conn.recv()
    time.sleep(max(0.0, t0 - time.time()))
    sent, acked, last_ack, times, error = _publish(sock, spec, packets, offsets, t0)
    try:
        sock.setblocking(True)
        sock.sendall(DISCONNECT)
    except OSError:
        pass
    sock.close()
    conn.send((sent, acked, last_ack, times.tobytes(), error))


class Load:
    """K publisher processes for one spec: started (payloads built, connected) by the constructor.

    `go()` starts the clock for all of them, `wait()` collects their results.
    They inherit the CPU affinity of the process that makes them.
    """

    def __init__(self, spec: LoadSpec, publishers: int = 1) -> None:
        self.spec = spec
        self.publishers = max(1, min(publishers, spec.devices))
        self.t0 = 0.0
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.Process] = []
        for k in range(self.publishers):
            parent, child = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=_publisher, args=(spec, k, self.publishers, child),
                                           daemon=True, name=f"mqtt-load-{k}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            # building a publisher's packets takes about 1 s per million messages
            if not conn.poll(60 + spec.total / 1e5):
                self.close()
                raise TimeoutError("a publisher did not get ready")
            status = conn.recv()
            if status != "ready":
                self.close()
                raise ConnectionError(f"publisher: {status}")

    def go(self, delay: float = 0.05) -> float:
        """Start all publishers `delay` seconds from now (the same t0 for all); returns t0."""
        self.t0 = time.time() + delay
        for conn in self._conns:
            conn.send(self.t0)
        return self.t0

    def wait(self) -> LoadResult:
        """Wait for every publisher to finish (or give up) and merge their results."""
        times = array("d", bytes(8 * self.spec.total))
        sent = acked = 0
        last_ack = self.t0
        errors: list[str] = []
        for k, conn in enumerate(self._conns):
            try:
                if not conn.poll(self.spec.timeout + 30):
                    raise EOFError
                k_sent, k_acked, k_last, raw, error = conn.recv()
            except EOFError:
                errors.append(f"publisher {k}: no result")
                continue
            sent, acked, last_ack = sent + k_sent, acked + k_acked, max(last_ack, k_last)
            k_times = array("d")
            k_times.frombytes(raw)
            for j, i in enumerate(message_indices(self.spec.total, self.spec.devices, k, self.publishers)):
                times[i] = k_times[j]
            if error:
                errors.append(f"publisher {k}: {error}")
        self.close()
        return LoadResult(self.spec.total, sent, acked, self.t0, last_ack, times, errors)

    def close(self) -> None:
        """End the publisher processes: those that have not sent their result by now never will."""
        for proc in self._procs:
            proc.join(1)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self._conns:
            conn.close()


# -- a private Mosquitto ----------------------------------------------------------------

class Mosquitto:
    """A Mosquitto of our own on a free port, without the shared one's limits.

    The default max_queued_messages (1000 per client) drops QoS 1 messages
    to a persistent session once that many wait behind the in-flight ones:
    a burst faster than the agent would lose messages at the MQTT broker.
    Here queues are unbounded (count and bytes), and 1000 messages may be in
    flight to a client, as many as the agent's MQTT 5 receive maximum.
    """

    def __init__(self, workdir: Path, binary: str = MOSQUITTO) -> None:
        from bench.procs import free_port  # METROPOLE_TEST_PORTS honoured, as for the bench's other servers

        self.port = free_port()
        self.host, self.workdir, self.binary = "127.0.0.1", workdir, binary
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections (it inherits our CPU affinity)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {self.host}\n"
                        "allow_anonymous true\n"
                        "persistence false\n"
                        "max_queued_messages 0\n"
                        "max_queued_bytes 0\n"
                        "max_inflight_messages 1000\n"
                        "log_dest stderr\n"
                        "log_type error\nlog_type warning\n")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=200_000, help="messages in all")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes")
    parser.add_argument("--rate", type=float, default=None, help="messages/s in all (default: flat out)")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged messages per publisher")
    parser.add_argument("--mosquitto", choices=("own", "system"), default="own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mqtt-load-") as tmp:
        mosquitto = None
        if args.mosquitto == "own":
            mosquitto = Mosquitto(Path(tmp))
            mosquitto.start()
            host, port = mosquitto.host, mosquitto.port
        else:
            host = os.environ.get("METROPOLE_TEST_MQTT_HOST", "127.0.0.1")
            port = int(os.environ.get("METROPOLE_TEST_MQTT_PORT", "1883"))
        try:
            spec = LoadSpec(host, port, "loadtest", args.devices, args.total, rate=args.rate, window=args.window,
                            timeout=(args.total / args.rate if args.rate else 0) + 120)
            load = Load(spec, args.publishers)
            load.go()
            result = load.wait()
        finally:
            if mosquitto:
                mosquitto.stop()
    print(f"{result.acked} of {result.total} PUBACKed by {host}:{port} ({args.mosquitto} Mosquitto, no subscriber) "
          f"in {result.last_ack - result.t0:.2f} s: {result.rate:,.0f} msg/s with {load.publishers} publisher(s)")
    for error in result.errors:
        print(error, file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
