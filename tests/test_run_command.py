"""Smoke test of the README's run command: `metropole run` starts, answers NGSI-LD, and stops on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metropole_run_serves_the_ngsi_ld_api_and_stops_cleanly(tmp_path: Path) -> None:
    port, prov, http, mqtt_port, history = _free_port(), _free_port(), _free_port(), _free_port(), _free_port()
    data = tmp_path / "data"
    env = {**os.environ, "METROPOLE_LOG_LEVEL": "WARNING"}
    # Free ports for the agents too; nothing answers on mqtt_port, so `run` starts its embedded MQTT broker.
    proc = subprocess.Popen(
        [sys.executable, "-m", "metropole", "run", "--data", str(data), "--broker-port", str(port),
         "--agent-provisioning-port", str(prov), "--agent-http-port", str(http), "--agent-mqtt-port", str(mqtt_port),
         "--history-port", str(history)],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"metropole run exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            try:
                response = httpx.get(f"{base}/types", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        entity = {"id": "urn:ngsi-ld:AirQualityObserved:smoke", "type": "AirQualityObserved",
                  "no2": {"type": "Property", "value": 41, "unitCode": "GQ"}}
        created = httpx.post(f"{base}/entities", json=entity, timeout=5)
        assert created.status_code == 201, created.text
        back = httpx.get(f"{base}/entities/urn:ngsi-ld:AirQualityObserved:smoke", timeout=5)
        assert back.json()["no2"]["value"] == 41
        assert (data / "broker.db").exists(), "the embedded defaults keep data under --data"
        assert httpx.get(f"http://127.0.0.1:{prov}/iot/about", timeout=5).status_code == 200
        measure = httpx.post(f"http://127.0.0.1:{http}/iot/json", params={"k": "nokey", "i": "d1"},
                             json={"no2": 1}, timeout=5)
        assert measure.status_code == 404 and measure.json()["name"] == "DEVICE_GROUP_NOT_FOUND", (
            "the southbound HTTP transport answers as iotagent-json (an unknown key is a 404 and a dead letter)")
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=5):
            pass  # the embedded MQTT broker answers where none did
        assert (data / "outbox.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
