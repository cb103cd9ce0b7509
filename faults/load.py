"""Devices under test: numbered measures over MQTT (QoS 1) and HTTP, and the ledger of what the platform accepted.

Every measure carries its number as the `no2` value and a `TimeInstant` of
its own (sensors stamp their readings), so history can be checked measure by
measure: accepted, stored, stored twice. A measure counts as accepted when
Mosquitto acknowledged it (PUBACK; the agent takes it from there with its
persistent session) or when the agent's HTTP transport answered 200 (only
after its outbox commit). A device whose send failed sends the same measure
again, as a device would.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

APIKEY = "faults"
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(seq: int) -> str:
    """The TimeInstant of measure `seq`: a millisecond apart from the next."""
    return (BASE_TIME + timedelta(milliseconds=seq)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Measure:
    seq: int
    device: str
    via: str
    phase: str
    accepted: bool = False


@dataclass
class Ledger:
    """Every measure sent, by number, with the phase it was first sent in."""

    phase: str = "warm-up"
    measures: dict[int, Measure] = field(default_factory=dict)
    attempts: int = 0
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, device: str, via: str) -> Measure:
        with self._lock:
            self._next += 1
            measure = Measure(self._next, device, via, self.phase)
            self.measures[measure.seq] = measure
            return measure


def payload(measure: Measure, stamped: bool = True) -> bytes:
    """The measure's JSON; unstamped, the agent stamps it with its arrival time (as for devices without a clock)."""
    return orjson.dumps({"no2": measure.seq, "TimeInstant": stamp(measure.seq)} if stamped else {"no2": measure.seq})


class MqttDevices:
    """Devices m0..m(n-1) publishing round-robin at `rate` measures/s through one persistent QoS 1 session."""

    def __init__(self, ledger: Ledger, port: int, devices: int, rate: float) -> None:
        self.ledger, self.port, self.devices, self.rate = ledger, port, devices, rate
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"faults-devices-{uuid.uuid4().hex[:6]}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self._pending: dict[int, Measure] = {}
        self._early_acks: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._acked
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-devices", daemon=True)

    def _acked(self, client: mqtt.Client, userdata: object, mid: int, reason: object = None, props: object = None) -> None:
        with self._lock:
            measure = self._pending.pop(mid, None)
            if measure is None:  # acknowledged before _run recorded its mid
                self._early_acks.add(mid)
        if measure is not None:
            measure.accepted = True

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            measure = self.ledger.new(f"m{n % self.devices}", "mqtt")
            stamped = n % 2 == 0  # odd devices send no TimeInstant: a replay would then be a second instance
            # paho keeps unacknowledged messages and sends them again after a reconnect. publish() is called
            # without our lock held: paho calls _acked holding its own out-message lock, which publish() takes
            # too, so holding ours around publish() deadlocked both threads (seen as a CI run that never ended)
            info = self.client.publish(f"/{APIKEY}/{measure.device}/attrs", payload(measure, stamped), qos=1)
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    measure.accepted = True
                else:
                    self._pending[info.mid] = measure
            n += 1
            self.ledger.attempts += 1
            time.sleep(1 / self.rate)

    def stop(self, wait: float = 60) -> None:
        """Stop sending; wait for the acknowledgements still due."""
        self._stop.set()
        self._thread.join(30)
        deadline = time.monotonic() + wait
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client.loop_stop()
        self.client.disconnect()


class HttpDevices:
    """Devices h0..h(n-1) POSTing to the agent's /iot/json at `rate` measures/s, retrying a failed send."""

    def __init__(self, ledger: Ledger, port: int, devices: int, rate: float) -> None:
        self.ledger, self.port, self.devices, self.rate = ledger, port, devices, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-devices", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                measure = self.ledger.new(f"h{n % self.devices}", "http")
                n += 1
                while not self._stop.is_set():
                    self.ledger.attempts += 1
                    try:
                        r = client.post(f"http://127.0.0.1:{self.port}/iot/json",
                                        params={"k": APIKEY, "i": measure.device}, content=payload(measure),
                                        headers={"Content-Type": "application/json"})
                        if r.status_code == 200:
                            measure.accepted = True
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                time.sleep(1 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
