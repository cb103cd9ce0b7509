"""Both stacks, for real, with pytest-docker: up, provision, publish MQTT measures, read back.

Each stack is built and started once per module (`docker compose up --build
-d`, then `down -v`), on free host ports and with passwords made for the run.
A device is provisioned through the agents' provisioning API, two measures
are published on MQTT, the entity is read back from the NGSI-LD broker
(Orion-LD or ours) and its history from QuantumLeap (FIWARE) or the NGSI-LD
temporal API (embedded).

Where there is no Docker engine these tests skip with that reason, **also
under CI=true**: unlike PostgreSQL and Mosquitto (tests/services.py), Docker
is not a service this project's CI machine can start, so its absence is a
property of the machine, not a failed set-up. `test_the_docker_gate_skips_even_under_ci`
pins that decision down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pytest_docker.plugin import Services, get_docker_services

from tests.compose.conftest import STACKS

pytestmark = pytest.mark.docker

SERVICE = "metropole"  # fiware-service of the provisioned group, hence the NGSI-LD tenant
SERVICE_PATH = "/"
APIKEY = "compose-test-apikey"
DEVICE = "aq-compose-01"
ENTITY = f"urn:ngsi-ld:AirQualityObserved:{DEVICE}"
LINK = '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def docker_unavailable_reason() -> str | None:
    """Why the stacks cannot run here, or None when a Docker engine with Compose v2 answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed: {exc}"
    if info.returncode != 0:
        return (info.stderr.strip().splitlines() or ["`docker info` failed"])[0]
    compose = subprocess.run(["docker", "compose", "version"], check=False, capture_output=True, text=True, timeout=30)
    if compose.returncode != 0:
        return "the Docker Compose v2 plugin (`docker compose`) is not installed"
    return None


def require_docker() -> None:
    """Skip, on every machine and under CI=true alike, when Docker is absent."""
    reason = docker_unavailable_reason()
    if reason is not None:
        # Deliberately never pytest.fail under CI: Docker cannot be started on this project's CI machine.
        pytest.skip(f"Docker engine not available: {reason}")


def test_the_docker_gate_skips_even_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("tests.compose.test_stacks_docker.docker_unavailable_reason", lambda: "no engine here")
    with pytest.raises(pytest.skip.Exception, match="Docker engine not available: no engine here"):
        require_docker()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    name: str
    services: Services
    urls: dict[str, str]


@pytest.fixture(scope="module", params=sorted(STACKS))
def running_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    require_docker()
    name = str(request.param)
    ports = {var: _free_port() for var in ("HOST_PORT_NGSI_LD", "HOST_PORT_MQTT", "HOST_PORT_PROVISIONING",
                                             "HOST_PORT_DEVICE_HTTP", "HOST_PORT_HISTORY")}
    env = {
        "HOST_ADDRESS": "127.0.0.1",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "QUANTUMLEAP_DB_PASSWORD": secrets.token_urlsafe(18),
        "METROPOLE_DB_PASSWORD": secrets.token_urlsafe(18),
        "QUANTUMLEAP_TENANTS": SERVICE,
        **{k: str(v) for k, v in ports.items()},
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # pytest-docker runs `docker compose` with this process' environment
    project = f"metropole-test-{name}-{uuid.uuid4().hex[:8]}"
    try:
        with get_docker_services("docker compose", str(STACKS[name]), project, ["up --build -d"], ["down -v"]) as services:
            urls = {
                "ngsi_ld": f"http://127.0.0.1:{ports['HOST_PORT_NGSI_LD']}",
                "provisioning": f"http://127.0.0.1:{ports['HOST_PORT_PROVISIONING']}",
                "history": f"http://127.0.0.1:{ports['HOST_PORT_HISTORY']}",
                "mqtt_port": str(ports["HOST_PORT_MQTT"]),
            }
            checks = [f"{urls['ngsi_ld']}/version", f"{urls['provisioning']}/iot/about"]
            if name == "fiware":
                checks.append(f"{urls['history']}/version")
            for url in checks:
                services.wait_until_responsive(check=_answers(url), timeout=300.0, pause=2.0)
            yield Stack(name, services, urls)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def _eventually(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"not there after {timeout}s: {last!r}")


@pytest.fixture(scope="module")
def provisioned(running_stack: Stack) -> Stack:
    headers = {"fiware-service": SERVICE, "fiware-servicepath": SERVICE_PATH}
    base = running_stack.urls["provisioning"]
    group = {"services": [{"apikey": APIKEY, "entity_type": "AirQualityObserved", "resource": "/iot/json"}]}
    response = httpx.post(f"{base}/iot/services", json=group, headers=headers, timeout=10)
    assert response.status_code in {201, 409}, response.text
    device = {"devices": [{
        "device_id": DEVICE, "entity_name": ENTITY, "entity_type": "AirQualityObserved",
        "transport": "MQTT", "protocol": "PDI-IoTA-JSON",
        "attributes": [{"object_id": "no2", "name": "no2", "type": "Number"}],
    }]}
    response = httpx.post(f"{base}/iot/devices", json=device, headers=headers, timeout=10)
    assert response.status_code in {201, 409}, response.text
    return running_stack


def _publish(stack: Stack, measure: dict[str, Any]) -> None:
    from paho.mqtt import publish

    publish.single(f"/{APIKEY}/{DEVICE}/attrs", json.dumps(measure), qos=1,
                   hostname="127.0.0.1", port=int(stack.urls["mqtt_port"]))


def test_mqtt_measures_become_the_entity_and_its_history(provisioned: Stack) -> None:
    stack = provisioned
    _publish(stack, {"no2": 41})
    time.sleep(1.5)  # two distinct observation times
    _publish(stack, {"no2": 43})

    def current() -> dict[str, Any] | None:
        r = httpx.get(f"{stack.urls['ngsi_ld']}/ngsi-ld/v1/entities/{ENTITY}", params={"options": "keyValues"},
                      headers={"NGSILD-Tenant": SERVICE, "Link": LINK}, timeout=5)
        return r.json() if r.status_code == 200 and r.json().get("no2") == 43 else None

    entity = _eventually(current)
    assert entity["type"] == "AirQualityObserved"

    if stack.name == "fiware":
        def history() -> list[Any] | None:
            r = httpx.get(f"{stack.urls['history']}/v2/entities/{ENTITY}/attrs/no2",
                          headers={"Fiware-Service": SERVICE}, timeout=5)
            values = r.json().get("values", []) if r.status_code == 200 else []
            return values if len(values) >= 2 else None
    else:
        def history() -> list[Any] | None:
            r = httpx.get(f"{stack.urls['ngsi_ld']}/ngsi-ld/v1/temporal/entities/{ENTITY}",
                          params={"attrs": "no2", "options": "temporalValues"},
                          headers={"NGSILD-Tenant": SERVICE, "Link": LINK}, timeout=5)
            values = r.json().get("no2", {}).get("values", []) if r.status_code == 200 else []
            return values if len(values) >= 2 else None

    values = _eventually(history, timeout=90)
    numbers = [v[0] if isinstance(v, list) else v for v in values]
    assert 41 in numbers and 43 in numbers


def test_the_history_subscription_is_there_once(provisioned: Stack) -> None:
    if provisioned.name != "fiware":
        pytest.skip("the embedded broker keeps history itself: no subscription")
    r = httpx.get(f"{provisioned.urls['ngsi_ld']}/ngsi-ld/v1/subscriptions",
                  headers={"NGSILD-Tenant": SERVICE}, timeout=5)
    ids = [s["id"] for s in r.json()]
    assert ids.count("urn:ngsi-ld:Subscription:metropole-quantumleap") == 1
