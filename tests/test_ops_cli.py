"""The `metropole` command as an operator meets it: busy ports, secrets, TLS, access log, shutdown, API keys.

Each test runs the real console script in a subprocess on free ports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.pg import throwaway_schema
from tests.security.pki import make_pki
from tests.web.conftest import free_port

PROJECT = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metropole", *args], check=False, cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@contextmanager
def _serving(args: list[str], url: str, env: dict[str, str] | None = None, verify: object = True) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "metropole", *args], cwd=PROJECT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited early:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                httpx.get(url, timeout=2, verify=verify)  # type: ignore[arg-type]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "did not start"
                time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


def _output(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.read()


def test_a_busy_port_is_one_line_and_a_failed_start(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = _run("broker", "--port", str(busy), "--data", str(tmp_path))
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert f"port {busy} on 127.0.0.1 is already in use" in result.stderr and "--port" in result.stderr
        # a busy history port fails the whole start (a service manager sees it) unless the port is turned off
        ports = [str(free_port()) for _ in range(3)]
        result = _run("run", "--data", str(tmp_path), "--broker-port", ports[0], "--agent-provisioning-port", ports[1],
                      "--agent-http-port", ports[2], "--history-port", str(busy), "--agent-mqtt", "off")
        assert result.returncode == 1 and "history API cannot start" in result.stderr
        assert "--history-port (0 turns it off)" in result.stderr and "Traceback" not in result.stderr


def test_wrong_settings_are_one_line(tmp_path: Path) -> None:
    result = _run("broker", "--port", str(free_port()), "--data", str(tmp_path), env={"METROPOLE_AUTH": "on"})
    assert result.returncode == 1 and result.stderr.startswith("metropole: METROPOLE_AUTH=on needs")
    result = _run("broker", "--port", str(free_port()), "--data", str(tmp_path),
                  env={"METROPOLE_AUTH_API_KEYS": str(tmp_path / "missing")})
    assert result.returncode == 1 and "cannot read" in result.stderr and "Traceback" not in result.stderr



@pytest.mark.parametrize(("command", "variable", "raw", "line"), [
    ("broker", "METROPOLE_BROKER_DEFAULT_LIMIT", "many", "METROPOLE_BROKER_DEFAULT_LIMIT='many' is not a whole number"),
    ("broker", "METROPOLE_AUTH", "maybe", "METROPOLE_AUTH='maybe' must be auto, on or off"),
    ("agent", "METROPOLE_AGENT_HTTP_PORT", "http", "METROPOLE_AGENT_HTTP_PORT='http' is not a whole number"),
    ("broker", "METROPOLE_BROKER_PORT", "http", "METROPOLE_BROKER_PORT='http' is not a whole number"),  # a flag's default
])
def test_a_bad_value_is_one_line_naming_its_variable(tmp_path: Path, command: str, variable: str, raw: str,
                                                     line: str) -> None:
    """Settings are validated by pydantic-settings (web/settings.py); its errors reach the operator as one line."""
    ports = ["--port", str(free_port())] if command == "broker" else \
        ["--provisioning-port", str(free_port()), "--http-port", str(free_port())]  # none of the defaults, were it to start
    result = _run(command, "--data", str(tmp_path), *ports, env={variable: raw}, timeout=30)
    assert (result.returncode, result.stderr) == (1, f"metropole: {line}\n")

@pytest.mark.postgres
def test_the_store_password_is_never_printed(tmp_path: Path) -> None:
    password = "Pa55-never-shown-" + os.urandom(4).hex()
    port = free_port()
    with throwaway_schema("ops") as (dsn, schema):
        store = dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@") + f"?schema={schema}"
        with _serving(["broker", "--port", str(port), "--data", str(tmp_path), "--store", store],
                      f"http://127.0.0.1:{port}/version", env={"METROPOLE_LOG_LEVEL": "INFO"}) as proc:
            version = httpx.get(f"http://127.0.0.1:{port}/version").text
            identity = httpx.get(f"http://127.0.0.1:{port}/ngsi-ld/v1/info/sourceIdentity").text
    out = _output(proc)
    assert password not in out + version + identity
    assert "postgres:***@" in out
    assert re.search(r"metropole stopped \(SIGTERM\) after \d+s", out), out
    # an unreachable store: the start fails, with neither the password nor a success line
    unreachable = f"postgresql://app:{password}@127.0.0.1:{free_port()}/nowhere?schema=x"
    result = _run("broker", "--port", str(free_port()), "--data", str(tmp_path), "--store", unreachable)
    assert result.returncode != 0 and password not in result.stdout + result.stderr


def test_https_and_the_access_log_from_settings(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    keys = tmp_path / "keys"
    made = _run("auth", "apikey", "aix-portal", "aix:read")
    key = made.stderr.strip().splitlines()[-1]
    keys.write_text(made.stdout)
    port = free_port()
    env = {"METROPOLE_TLS_CERT": str(pki.server_cert), "METROPOLE_TLS_KEY": str(pki.server_key),
           "METROPOLE_ACCESS_LOG": "on", "METROPOLE_AUTH_API_KEYS": str(keys), "METROPOLE_LOG_LEVEL": "INFO"}
    base = f"https://127.0.0.1:{port}"
    with _serving(["broker", "--port", str(port), "--data", str(tmp_path)], f"{base}/health", env=env,
                  verify=str(pki.ca)) as proc, httpx.Client(verify=str(pki.ca), base_url=base) as c:
        version = c.get("/version").json()
        assert version["operations"]["auth"] == ["apikey"] and version["operations"]["tls"] is True
        assert version["operations"]["accessLog"] is True
        assert c.get("/ngsi-ld/v1/types?secret=hidden", headers={"NGSILD-Tenant": "aix"}).status_code == 401
        ok = c.get("/ngsi-ld/v1/entities/urn:ngsi-ld:X:1", headers={"NGSILD-Tenant": "aix", "X-API-Key": key})
        assert ok.status_code == 404
        ready = c.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "pass"
    out = _output(proc)
    assert "authentication apikey, TLS on" in out
    assert re.search(r'"GET /ngsi-ld/v1/entities/urn:ngsi-ld:X:1" 404 [\d.]+ms tenant=aix principal=aix-portal', out), out
    assert re.search(r'"GET /ngsi-ld/v1/types" 401 [\d.]+ms tenant=aix principal=-', out)
    assert "hidden" not in out and key not in out, "no query string, no key in the access log"


def test_run_with_authentication_on_still_delivers_the_agents_measures(tmp_path: Path) -> None:
    """`metropole run` gives its own agents a key (in memory); an operator's key reads what they wrote."""
    made = _run("auth", "apikey", "ops", "*:admin")
    key = made.stderr.strip().splitlines()[-1]
    (tmp_path / "keys").write_text(made.stdout)
    broker, prov, http, history = free_port(), free_port(), free_port(), free_port()
    env = {"METROPOLE_AUTH_API_KEYS": str(tmp_path / "keys"), "METROPOLE_LOG_LEVEL": "WARNING"}
    args = ["run", "--data", str(tmp_path / "data"), "--broker-port", str(broker), "--agent-provisioning-port", str(prov),
            "--agent-http-port", str(http), "--history-port", str(history), "--agent-mqtt", "off"]
    headers = {"fiware-service": "aix", "fiware-servicepath": "/", "X-API-Key": key}
    with _serving(args, f"http://127.0.0.1:{broker}/health", env=env):
        assert httpx.get(f"http://127.0.0.1:{prov}/iot/services", headers={"fiware-service": "aix",
                                                                          "fiware-servicepath": "/"}).status_code == 401
        group = {"services": [{"apikey": "opskey", "entity_type": "AirQualityObserved", "resource": "/iot/json"}]}
        assert httpx.post(f"http://127.0.0.1:{prov}/iot/services", json=group, headers=headers).status_code == 201
        sent = httpx.post(f"http://127.0.0.1:{http}/iot/json", params={"k": "opskey", "i": "d1"}, json={"no2": 7})
        assert sent.status_code == 200
        url = f"http://127.0.0.1:{broker}/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:d1"
        deadline = time.monotonic() + 30
        link = '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
        while (r := httpx.get(url, headers={"NGSILD-Tenant": "aix", "X-API-Key": key, "Link": link})).status_code != 200:
            assert time.monotonic() < deadline, f"the agents' measure never reached the broker: {r.text}"
            time.sleep(0.3)
        assert r.json()["no2"]["value"] == 7
        rejected = httpx.get(f"http://127.0.0.1:{prov}/iot/rejections", params={"service": "aix"}, headers=headers)
        assert "broker_rejected" not in rejected.text
