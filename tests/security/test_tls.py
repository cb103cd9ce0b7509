"""TLS with a test CA: the agent's MQTT client, the broker's MQTT notifications, the HTTP APIs.

Each test starts its own Mosquitto (the `mosquitto` binary) on free ports
with a CA and certificates made by tests/security/pki.py, never the
machine's Mosquitto on 1883: one listener with TLS and a password file, one
that also requires a client certificate.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agents.settings import AgentSettings
from agents.transports.mqtt import MqttOptions, MqttTransport
from broker.app import create_app
from broker.settings import BrokerSettings
from tests.agents.test_mqtt_client import FakeIntake
from tests.security.pki import Pki, make_pki
from tests.services import in_ci
from tests.web.conftest import Served, free_port
from web.tls import ServerTls, client_context

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class TlsMosquitto:
    pki: Pki
    password_port: int  # TLS + username/password
    client_cert_port: int  # TLS + client certificate + username/password


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mosquitto exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"mosquitto does not listen on {port}")


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[TlsMosquitto]:
    if not (Path(MOSQUITTO).exists() and shutil.which("mosquitto_passwd")):
        reason = "the mosquitto and mosquitto_passwd binaries (Debian's mosquitto package) are not installed"
        if in_ci():
            pytest.fail(f"{reason}; CI=true requires them", pytrace=False)
        pytest.skip(reason)
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "agent", "s3cret-tls"], check=True)
    one, two = free_port(), free_port()
    tls = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\npersistence false\n"
                    f"user {getpass.getuser()}\n"
                    f"listener {one} 127.0.0.1\n{tls}require_certificate false\n"
                    f"listener {two} 127.0.0.1\n{tls}require_certificate true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(one, proc)
        _wait_port(two, proc)
        yield TlsMosquitto(pki, one, two)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _paho(m: TlsMosquitto, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.username_pw_set("agent", "s3cret-tls")
    client.tls_set_context(client_context(str(m.pki.ca), str(m.pki.client_cert), str(m.pki.client_key)))
    connected = threading.Event()
    client.on_connect = lambda *a, **k: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "the test client could not connect"
    return client


async def _agent_receives(m: TlsMosquitto, port: int, settings: AgentSettings) -> bool:
    intake = FakeIntake()
    transport = MqttTransport(MqttOptions(host="127.0.0.1", port=port, client_id=f"tls-{uuid.uuid4().hex[:8]}",
                                          username="agent", password="s3cret-tls", tls=settings.mqtt_tls_context()),
                              intake)  # type: ignore[arg-type]
    transport.start()
    try:
        deadline = time.monotonic() + 10
        while not transport.connected.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        publisher = _paho(m, m.client_cert_port)
        try:
            publisher.publish("/tlskey/dev1/attrs", b'{"t": 21.5}', qos=1).wait_for_publish(10)
        finally:
            publisher.loop_stop()
            publisher.disconnect()
        while not intake.got:
            assert time.monotonic() < deadline + 10, "the measure did not arrive"
            await asyncio.sleep(0.05)
        message = intake.got[0][0]
        return message.apikey == "tlskey" and message.device_id == "dev1"
    finally:
        await transport.aclose()


def test_the_agent_subscribes_over_tls_verifying_the_server(tls_mosquitto: TlsMosquitto) -> None:
    m = tls_mosquitto
    settings = AgentSettings(mqtt_ca=str(m.pki.ca))
    assert asyncio.run(_agent_receives(m, m.password_port, settings))


def test_the_agent_presents_its_client_certificate_where_one_is_required(tls_mosquitto: TlsMosquitto) -> None:
    m = tls_mosquitto
    settings = AgentSettings(mqtt_ca=str(m.pki.ca), mqtt_cert=str(m.pki.client_cert), mqtt_key=str(m.pki.client_key))
    assert asyncio.run(_agent_receives(m, m.client_cert_port, settings))


def test_a_server_the_ca_did_not_sign_is_refused(tls_mosquitto: TlsMosquitto, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    m = tls_mosquitto
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other", "someone-else")
    settings = AgentSettings(mqtt_ca=str(other.ca))

    async def attempt() -> bool:
        transport = MqttTransport(MqttOptions(host="127.0.0.1", port=m.password_port, client_id="tls-bad-ca",
                                              username="agent", password="s3cret-tls", tls=settings.mqtt_tls_context()),
                                  FakeIntake())  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="metropole.agents.mqtt"):
            transport.start()
            try:
                deadline = time.monotonic() + 10
                while "CERTIFICATE_VERIFY_FAILED" not in caplog.text:
                    assert time.monotonic() < deadline, f"no verification failure logged: {caplog.text}"
                    await asyncio.sleep(0.05)
                return transport.connected.is_set()
            finally:
                await transport.aclose()

    assert asyncio.run(attempt()) is False


def test_broker_notifications_reach_an_mqtts_endpoint_verified_against_the_configured_ca(
        tls_mosquitto: TlsMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = tls_mosquitto
    monkeypatch.setenv("METROPOLE_BROKER_MQTT_CA", str(m.pki.ca))
    received: list[bytes] = []
    got = threading.Event()
    subscriber = _paho(m, m.client_cert_port)
    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(bytes(msg.payload))
        got.set()

    subscriber.on_message = on_message
    subscriber.subscribe("city/notifications", qos=1)
    port = free_port()
    settings = BrokerSettings(host="127.0.0.1", port=port, data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        with Served(create_app(settings), port=port) as broker:
            sub = {"type": "Subscription", "entities": [{"type": "TlsThing"}], "notification": {"endpoint": {
                "uri": f"mqtts://agent:s3cret-tls@127.0.0.1:{m.password_port}/city/notifications"}}}
            assert httpx.post(f"{broker.url}/ngsi-ld/v1/subscriptions", json=sub).status_code == 201
            entity = {"id": "urn:ngsi-ld:TlsThing:1", "type": "TlsThing", "v": {"type": "Property", "value": 1}}
            assert httpx.post(f"{broker.url}/ngsi-ld/v1/entities", json=entity).status_code == 201
            assert got.wait(20), "no notification over mqtts"
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    assert b"urn:ngsi-ld:TlsThing:1" in received[0]


def test_the_http_apis_serve_https_with_the_configured_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ServerTls.from_env({"METROPOLE_TLS_CERT": str(pki.server_cert), "METROPOLE_TLS_KEY": str(pki.server_key)})
    port = free_port()
    settings = BrokerSettings(host="127.0.0.1", port=port, data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'b.db'}")
    with Served(create_app(settings), port=port, **tls.uvicorn_options()) as broker:
        assert broker.url.startswith("https://")
        assert httpx.get(f"{broker.url}/version", verify=str(pki.ca)).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{broker.url}/version")  # the system CAs do not know the test CA
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/version")
    with pytest.raises(ValueError, match="go together"):
        ServerTls.from_env({"METROPOLE_TLS_CERT": str(pki.server_cert)})
    required = ServerTls.from_env({"METROPOLE_TLS_CERT": str(pki.server_cert), "METROPOLE_TLS_KEY": str(pki.server_key),
                                   "METROPOLE_TLS_CLIENT_CA": str(pki.ca)}).uvicorn_options()
    assert required["ssl_cert_reqs"] == ssl.CERT_REQUIRED
