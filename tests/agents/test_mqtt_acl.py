"""Per-service-group MQTT credentials: `metropole agent mqtt-auth` files loaded by a real Mosquitto.

Two service groups are provisioned over the API with an `mqtt_password`; the command writes the password
and ACL files from the registry; a Mosquitto of this test (the `mosquitto` binary, a port of 29000-29999)
loads them. What a group's device may not do is proved without sleeping: QoS 0 publishes of one
connection reach a subscriber in order, so a sentinel published after the forbidden message on the
device's own topic arrives only after the forbidden one would have.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import signal
import socket
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

from agents.mqtt_auth import HASH_FIELD, hash_password, users_of
from agents.transports.mqtt import COMMAND_RESULT_TOPICS, MEASURE_TOPICS
from metropole.cli import main
from tests.agents.conftest import RunningAgent
from tests.services import in_ci

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
AGENT_USER, AGENT_PASSWORD = "metropole-agent", "agent-s3cret"
GROUPS = {"services": [
    {"apikey": "akey", "resource": "/iot/json", "entity_type": "Thing", "mqtt_password": "pw-of-A"},
    {"apikey": "bkey", "resource": "/iot/json", "entity_type": "Thing", "mqtt_password": "pw-of-B",
     "mqtt_username": "group-b"},
]}


def _port_in_range() -> int:
    """A free port of this work's range (29000-29999)."""
    start = 29000 + os.getpid() % 900
    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 29000-29999")


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    files: tuple[Path, Path]
    agent: RunningAgent


def _write_files(agent: RunningAgent, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METROPOLE_AGENT_MQTT_USERNAME", AGENT_USER)
    monkeypatch.setenv("METROPOLE_AGENT_MQTT_PASSWORD", AGENT_PASSWORD)
    assert main(["agent", "mqtt-auth", "--password-file", str(files[0]), "--acl-file", str(files[1]),
                 "--registry", agent.settings.registry_url]) == 0


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        reason = "the mosquitto binary (Debian's mosquitto package) is not installed"
        if in_ci():
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    with RunningAgent(f"sqlite:///{tmp_path / 'agents.db'}") as agent:
        headers = {"fiware-service": "openiot", "fiware-servicepath": "/"}
        assert httpx.post(f"{agent.url}/iot/services", json=GROUPS, headers=headers).status_code == 201
        files = (tmp_path / "passwd", tmp_path / "acl")
        _write_files(agent, files, monkeypatch)
        port = _port_in_range()
        conf = tmp_path / "mosquitto.conf"
        # `user`: started as root, Mosquitto would switch to its own user, who cannot read pytest's tmp_path
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {files[0]}\n"
                        f"acl_file {files[1]}\npersistence false\nuser {getpass.getuser()}\n")
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                assert proc.poll() is None, "mosquitto exited"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"mosquitto does not listen on {port}"
                    time.sleep(0.05)
            yield Broker(port, proc, files, agent)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


class Client:
    """A paho client that records the CONNACK, SUBACKs and messages it gets."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.connack: queue.Queue[mqtt.ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[mqtt.ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}")
        c.username_pw_set(username, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(rcs)
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.accepted = not self.connack.get(timeout=10).is_failure

    def subscribe(self, topics: list[str]) -> list[bool]:
        """Whether Mosquitto granted each subscription."""
        self.client.subscribe([(t, 1) for t in topics])
        return [not rc.is_failure for rc in self.subacks.get(timeout=10)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_group_publishes_only_on_its_own_topics(broker: Broker) -> None:
    agent = Client(broker.port, AGENT_USER, AGENT_PASSWORD)
    device = Client(broker.port, "akey", "pw-of-A")
    try:
        assert agent.accepted and device.accepted
        # the agent's own subscriptions, as agents/transports/mqtt.py makes them, are all granted
        assert agent.subscribe([*MEASURE_TOPICS, *COMMAND_RESULT_TOPICS]) == [True] * 9
        device.client.publish("/bkey/dev9/attrs", b'{"t": 99}', qos=0)       # B's topic: dropped
        device.client.publish("/json/bkey/dev9/attrs", b'{"t": 98}', qos=0)  # B's, prefixed: dropped
        device.client.publish("/akey/dev1/cmd", b'{"reboot": 1}', qos=0)     # a command is the agent's to send
        device.client.publish("/akey/dev1/attrs", b'{"t": 21}', qos=0)       # the sentinel, A's own topic
        assert agent.messages.get(timeout=10) == ("/akey/dev1/attrs", b'{"t": 21}')
        device.client.publish("/ul/akey/dev1/cmdexe", b"dev1@reboot|done", qos=0)
        assert agent.messages.get(timeout=10) == ("/ul/akey/dev1/cmdexe", b"dev1@reboot|done")
        # commands: the agent sends them; A's device gets its own, not B's (Mosquitto 2.0 grants the
        # subscription and checks `read` at each delivery), so B's command goes first, A's is the sentinel
        assert device.subscribe(["/+/+/cmd"]) == [True]
        agent.client.publish("/bkey/dev9/cmd", b'{"open": 1}', qos=0)
        agent.client.publish("/akey/dev1/cmd", b'{"reboot": 1}', qos=0)
        assert device.messages.get(timeout=10) == ("/akey/dev1/cmd", b'{"reboot": 1}')
    finally:
        agent.close()
        device.close()


def test_wrong_credentials_are_refused_at_connect(broker: Broker) -> None:
    for username, password in [("akey", "wrong"), ("akey", "pw-of-B"), ("bkey", "pw-of-B"), ("nobody", "pw-of-A")]:
        c = Client(broker.port, username, password)
        c.close()
        assert not c.accepted, (username, password)
    right = Client(broker.port, "group-b", "pw-of-B")  # B's user is its mqtt_username
    right.close()
    assert right.accepted


def test_a_new_password_holds_after_the_files_are_written_again_and_mosquitto_is_sent_sighup(
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"fiware-service": "openiot", "fiware-servicepath": "/"}
    r = httpx.put(f"{broker.agent.url}/iot/services", params={"resource": "/iot/json", "apikey": "akey"},
                  json={"mqtt_password": "new-pw-of-A"}, headers=headers)
    assert r.status_code == 204
    _write_files(broker.agent, broker.files, monkeypatch)
    broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10  # Mosquitto reloads in its own time: ask until the new password holds
    while True:
        c = Client(broker.port, "akey", "new-pw-of-A")
        c.close()
        if c.accepted:
            break
        assert time.monotonic() < deadline, "Mosquitto did not take the new password after SIGHUP"
        threading.Event().wait(0.1)
    old = Client(broker.port, "akey", "pw-of-A")
    old.close()
    assert not old.accepted


def test_groups_that_cannot_be_confined_get_no_user() -> None:
    hashed = hash_password("x", iterations=1)
    groups = [{"apikey": "json", HASH_FIELD: hashed}, {"apikey": "a+b", HASH_FIELD: hashed},
              {"apikey": "ok", "mqtt_username": "bad name", HASH_FIELD: hashed}, {"apikey": "nopw"},
              {"apikey": "ok", HASH_FIELD: hashed}, {"apikey": "ok", "subservice": "/other", HASH_FIELD: hashed}]
    users, notes = users_of(groups)
    assert [(u.username, u.apikeys) for u in users] == [("ok", ["ok"])] and len(notes) == 4
    with pytest.raises(ValueError, match="two passwords"):
        users_of([{"apikey": "ok", HASH_FIELD: hashed}, {"apikey": "ok", HASH_FIELD: hash_password("y")}])
