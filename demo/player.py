"""Plays the demo: provisions the fleet through the provisioning API, backfills history, then sends live measures.

Everything goes the way an integrator's devices go: service groups and
devices are created with `POST /iot/services` and `POST /iot/devices`
(headers fiware-service / fiware-servicepath; a 409 on a restart means they
are there already), and measures are MQTT messages on
`/<apikey>/<device_id>/attrs`, QoS 1, which the agents map to Smart Data
Models entities. The backfill sends each device's past days as multi-measure
arrays (one message per device and day, one measure per `step` minutes), each
measure with its `TimeInstant`, oldest first, so the broker's history is
filled through the same path as live data.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.fleet import APIKEYS, FLEET, SERVICE, SUBSERVICE, DemoDevice, provisioning, service_groups
from demo.scenario import measure
from indicators.timebase import iso, local_at, local_day

log = logging.getLogger("demo")


@dataclass(frozen=True)
class DemoSettings:
    """Where the agents are, how much history to backfill and how often live measures go."""

    provisioning_url: str = "http://127.0.0.1:4041"
    broker_url: str = "http://127.0.0.1:1026"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    days: int = 14
    step_minutes: int = 60
    interval: float = 60.0


def topic(device: DemoDevice) -> str:
    """The iotagent-json measure topic of a device."""
    return f"/{APIKEYS[device.kind]}/{device.device_id}/attrs"


async def provision(settings: DemoSettings) -> None:
    """Create the service groups and the devices (existing ones are kept)."""
    headers = {"fiware-service": SERVICE, "fiware-servicepath": SUBSERVICE}
    async with httpx.AsyncClient(base_url=settings.provisioning_url, headers=headers, timeout=10) as http:
        groups = await http.post("/iot/services", json={"services": service_groups()})
        if groups.status_code not in (201, 409):
            raise RuntimeError(f"provisioning the demo groups failed: {groups.status_code} {groups.text}")
        for device in FLEET:
            answer = await http.post("/iot/devices", json={"devices": [provisioning(device)]})
            if answer.status_code not in (201, 409):
                raise RuntimeError(f"provisioning {device.device_id} failed: {answer.status_code} {answer.text}")


def backfill_messages(now: datetime, days: int, step_minutes: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of the past `days` days and today up to `now`, one message per device and day."""
    today = local_day(now)
    out = []
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        start, end = local_at(day, 0), min(local_at(day, 24), now)
        for device in FLEET:
            batch: list[dict[str, Any]] = []
            t = start
            while t < end:
                batch.append({**measure(device, t, today), "TimeInstant": iso(t)})
                t += timedelta(minutes=step_minutes)
            if batch:
                out.append((topic(device), orjson.dumps(batch)))
    return out


class Player:
    """Runs the demo until stopped: provision, backfill, then live measures every `interval` seconds."""

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"metropole-demo-{id(self)}")
        self.sent = 0
        self.backfilled = asyncio.Event()

    async def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, payload, qos=1) for t, payload in messages]
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 30)
        self.sent += len(messages)

    async def _first_measure_through(self, stop: asyncio.Event) -> None:
        """Send the history's first measure until it reaches the broker: the agents' MQTT subscription is then in
        place (a message published before an agent ever subscribed would be lost), and the path works end to end.
        It carries the backfill's oldest time so every device's measures still arrive oldest first."""
        device = FLEET[0]
        headers = {"NGSILD-Tenant": SERVICE, "Accept": "application/json"}
        url = f"{self.settings.broker_url.rstrip('/')}/ngsi-ld/v1/entities/{device.entity_id}"
        async with httpx.AsyncClient(timeout=5) as http:
            today = local_day(datetime.now(UTC))
            moment = local_at(today - timedelta(days=self.settings.days), 0)
            while not stop.is_set():
                await self._publish([(topic(device), orjson.dumps({**measure(device, moment, today),
                                                                    "TimeInstant": iso(moment)}))])
                for _ in range(10):
                    try:
                        if (await http.get(url, headers=headers)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=0.2)
                    except TimeoutError:
                        continue

    async def run(self, stop: asyncio.Event) -> None:
        """Play until `stop` is set."""
        s = self.settings
        await _retry(lambda: provision(s), stop, "provisioning")
        self.client.connect(s.mqtt_host, s.mqtt_port)
        self.client.loop_start()
        try:
            await self._first_measure_through(stop)
            now = datetime.now(UTC)
            await self._publish(backfill_messages(now, s.days, s.step_minutes))
            log.info("demo: %d devices provisioned, %d days of history sent", len(FLEET), s.days)
            self.backfilled.set()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=s.interval)
                except TimeoutError:
                    pass
                moment = datetime.now(UTC)
                today = local_day(moment)
                await self._publish([(topic(d), orjson.dumps({**measure(d, moment, today), "TimeInstant": iso(moment)}))
                                     for d in FLEET])
        finally:
            self.client.loop_stop()
            self.client.disconnect()


async def _retry(action: Any, stop: asyncio.Event, what: str) -> None:
    """Try `action` until it works (the agents may still be starting) or `stop` is set."""
    delay = 0.2
    while not stop.is_set():
        try:
            await action()
            return
        except (httpx.TransportError, RuntimeError) as exc:
            log.info("demo: %s not done yet (%s); retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
