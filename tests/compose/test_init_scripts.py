"""The stacks' scripts, run here without Docker.

`subscribe-quantumleap.sh` runs against a stand-in Orion-LD (a local HTTP
server recording requests): the first run creates the subscription with its
fixed id, the second finds it and brings it up to date, never a second POST.
`healthcheck.py` answers 0 for a 2xx and 1 for anything else. The TimescaleDB
init script is checked for syntax and for taking passwords from psql
variables only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.compose.conftest import COMPOSE

SUBSCRIBE = COMPOSE / "fiware" / "subscribe-quantumleap.sh"
TIMESCALE_INIT = COMPOSE / "fiware" / "timescale-init" / "10-databases.sh"
HEALTHCHECK = COMPOSE / "healthcheck.py"
SUBSCRIPTION_ID = "urn:ngsi-ld:Subscription:metropole-quantumleap"


class FakeOrion:
    """Subscriptions by (tenant, id); every request recorded as (method, path, headers, body)."""

    def __init__(self) -> None:
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.version_status = 200


def _handler(orion: FakeOrion) -> type[BaseHTTPRequestHandler]:
    prefix = "/ngsi-ld/v1/subscriptions"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if data:
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> tuple[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            self.requests_entry = (self.command, self.path, dict(self.headers.items()), body)
            orion.requests.append(self.requests_entry)
            return self.headers.get("NGSILD-Tenant", ""), body

        def do_GET(self) -> None:
            tenant, _ = self._record()
            if self.path == "/version":
                return self._reply(orion.version_status, {"orionld version": "stand-in"})
            sub_id = self.path[len(prefix) + 1:]
            if (tenant, sub_id) in orion.subscriptions:
                return self._reply(200, orion.subscriptions[(tenant, sub_id)])
            return self._reply(404, {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"})

        def do_POST(self) -> None:
            tenant, body = self._record()
            key = (tenant, body["id"])
            if key in orion.subscriptions:
                return self._reply(409, {"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"})
            orion.subscriptions[key] = body
            return self._reply(201)

        def do_PATCH(self) -> None:
            tenant, body = self._record()
            key = (tenant, self.path[len(prefix) + 1:])
            orion.subscriptions[key].update(body)
            return self._reply(204)

    return Handler


@pytest.fixture
def orion() -> Iterator[tuple[FakeOrion, str]]:
    fake = FakeOrion()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_subscribe(url: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the script runs in the curl image)")
    full_env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), "ORION_URL": url,
                "SUBSCRIPTION_WAIT_SECONDS": "4", **env}
    return subprocess.run(["sh", str(SUBSCRIBE)], env=full_env, check=False, capture_output=True, text=True, timeout=60)


def test_the_scripts_are_posix_sh() -> None:
    for script in (SUBSCRIBE, TIMESCALE_INIT):
        result = subprocess.run(["sh", "-n", str(script)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_first_run_creates_the_subscription_with_its_fixed_id(orion: tuple[FakeOrion, str], tmp_path: Path) -> None:
    fake, url = orion
    result = run_subscribe(url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created" in result.stdout
    sub = fake.subscriptions[("", SUBSCRIPTION_ID)]
    assert sub["type"] == "Subscription"
    assert sub["entities"] == [{"type": t} for t in
                               ("AirQualityObserved", "NoiseLevelObserved", "WeatherObserved", "Device")]
    assert sub["notification"]["endpoint"] == {"uri": "http://quantumleap:8668/v2/notify", "accept": "application/json"}
    assert sub["notification"]["format"] == "normalized"
    post = next(r for r in fake.requests if r[0] == "POST")
    assert post[2]["Link"].startswith("<https://smartdatamodels.org/context.jsonld>; rel=")
    assert post[2]["Content-Type"] == "application/json"


def test_a_second_run_updates_and_never_duplicates(orion: tuple[FakeOrion, str], tmp_path: Path) -> None:
    fake, url = orion
    assert run_subscribe(url, tmp_path).returncode == 0
    result = run_subscribe(url, tmp_path, QUANTUMLEAP_ENTITY_TYPES="AirQualityObserved, NoiseLevelObserved")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already there" in result.stdout
    assert [r[0] for r in fake.requests if r[1].startswith("/ngsi-ld")] == ["GET", "POST", "GET", "PATCH"]
    patch = next(r for r in fake.requests if r[0] == "PATCH")
    assert "id" not in patch[3]
    assert fake.subscriptions[("", SUBSCRIPTION_ID)]["entities"] == [
        {"type": "AirQualityObserved"}, {"type": "NoiseLevelObserved"}]


def test_one_subscription_per_tenant_named_to_quantumleap(orion: tuple[FakeOrion, str], tmp_path: Path) -> None:
    fake, url = orion
    result = run_subscribe(url, tmp_path, QUANTUMLEAP_TENANTS="aix,marseille")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(fake.subscriptions) == {("aix", SUBSCRIPTION_ID), ("marseille", SUBSCRIPTION_ID)}
    endpoint = fake.subscriptions[("aix", SUBSCRIPTION_ID)]["notification"]["endpoint"]
    assert endpoint["receiverInfo"] == [{"key": "Fiware-Service", "value": "aix"}]


def test_the_job_fails_when_orion_never_answers(orion: tuple[FakeOrion, str], tmp_path: Path) -> None:
    fake, url = orion
    fake.version_status = 503
    result = run_subscribe(url, tmp_path, SUBSCRIPTION_WAIT_SECONDS="2")
    assert result.returncode == 1
    assert "does not answer" in result.stdout
    assert not fake.subscriptions


def test_the_timescale_init_takes_passwords_from_psql_variables_only() -> None:
    text = TIMESCALE_INIT.read_text(encoding="utf-8")
    assert "PASSWORD :'ql_password'" in text and "PASSWORD :'mp_password'" in text
    assert "<<'SQL'" in text, "the SQL here-document must be quoted so the shell expands nothing in it"
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in text and "CREATE EXTENSION IF NOT EXISTS postgis" in text


def _healthcheck(url: str) -> int:
    env = {**os.environ, "METROPOLE_HEALTHCHECK_URL": url, "METROPOLE_HEALTHCHECK_TIMEOUT": "2"}
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, check=False, capture_output=True, timeout=30).returncode


def test_the_image_health_check_follows_the_answer(orion: tuple[FakeOrion, str]) -> None:
    fake, url = orion
    assert _healthcheck(f"{url}/version") == 0
    fake.version_status = 503
    assert _healthcheck(f"{url}/version") == 1


def test_the_image_health_check_fails_when_nothing_listens() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _healthcheck(f"http://127.0.0.1:{port}/version") == 1
