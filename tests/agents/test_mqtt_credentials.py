"""The agent's MQTT client logs in to a Mosquitto that has a password file (compose/README.md, "Securing MQTT")."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agents.transports.mqtt import MqttOptions, MqttTransport
from tests.agents.test_mqtt_client import FakeIntake
from tests.services import in_ci

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def locked_mosquitto(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (Path(MOSQUITTO).exists() and shutil.which("mosquitto_passwd")):
        reason = "the mosquitto and mosquitto_passwd binaries (Debian's mosquitto package) are not installed"
        if in_ci():
            pytest.fail(f"{reason}; CI=true requires them (.ci/run installs the package)", pytrace=False)
        pytest.skip(reason)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "agent", "s3cret"], check=True)
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    # `user`: started as root, Mosquitto would switch to its own user, who cannot read pytest's tmp_path
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
                    f"persistence false\nuser {getpass.getuser()}\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


async def _connects(port: int, username: str | None, password: str | None) -> bool:
    options = MqttOptions(host="127.0.0.1", port=port, client_id=f"cred-{username}-{password}",
                          username=username, password=password)
    transport = MqttTransport(options, FakeIntake())  # type: ignore[arg-type]
    transport.start()
    try:
        for _ in range(30):
            if transport.connected.is_set():
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await transport.aclose()


def test_the_agent_connects_with_its_credentials_and_not_without(locked_mosquitto: int) -> None:
    assert asyncio.run(_connects(locked_mosquitto, "agent", "s3cret"))
    assert not asyncio.run(_connects(locked_mosquitto, "agent", "wrong"))
    assert not asyncio.run(_connects(locked_mosquitto, None, None))
