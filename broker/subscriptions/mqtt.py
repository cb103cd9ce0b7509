"""MQTT notification binding (clause 7.2): mqtt[s]://[user[:password]@]host[:port]/topic[/subtopic]*.

One paho client per (scheme, host, port, user, password, MQTT version),
connected once and kept, its network loop in paho's own thread. `publish`
is blocking (the caller runs it in a worker thread) and reports success
only when the broker acknowledged the message (QoS 1: PUBACK, QoS 2:
PUBCOMP); QoS 0 counts as sent once written. MQTT-QoS defaults to 1
(at least once, as every other notification), MQTT-Version to mqtt5.0.
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.settings import notification_tls_context

Key = tuple[str, str, int, str | None, str | None, str]


def parse_endpoint(uri: str) -> tuple[Key, str]:
    """The client key and the topic of an MQTT endpoint URI."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    port = parts.port or (8883 if scheme == "mqtts" else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    topic = parts.path.lstrip("/")
    return (scheme, parts.hostname or "", port, user, password, ""), topic


class MqttPublisher:
    """A pool of connected paho clients."""

    def __init__(self) -> None:
        self._clients: dict[Key, mqtt.Client] = {}
        self._lock = threading.Lock()

    def _client(self, key: Key, version: str, timeout: float) -> mqtt.Client:
        with self._lock:
            client = self._clients.get(key)
            if client is not None and client.is_connected():
                return client
            if client is not None:
                client.loop_stop()
                client.disconnect()
                del self._clients[key]
            scheme, host, port, user, password, _ = key
            protocol = mqtt.MQTTv311 if version == "mqtt3.1.1" else mqtt.MQTTv5
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ngsild-notifier-{uuid.uuid4().hex[:12]}",
                                 protocol=protocol)
            if user is not None:
                client.username_pw_set(user, password)
            if scheme == "mqtts":
                client.tls_set_context(notification_tls_context())  # ops: the CA/client cert of the settings
            connected = threading.Event()
            client.on_connect = lambda c, u, flags, rc, props=None: connected.set()
            client.connect(host, port, keepalive=30)
            client.loop_start()
            if not connected.wait(timeout) or not client.is_connected():
                client.loop_stop()
                client.disconnect()
                raise ConnectionError(f"MQTT broker {host}:{port} did not accept the connection")
            self._clients[key] = client
            return client

    def publish(self, uri: str, payload: bytes, notifier: dict[str, str], timeout: float) -> bool:
        """Publish one message; whether the broker acknowledged it within `timeout` seconds."""
        key, topic = parse_endpoint(uri)
        version = notifier.get("MQTT-Version", "mqtt5.0")
        key = (*key[:5], version)
        qos = int(notifier.get("MQTT-QoS", "1"))
        client = self._client(key, version, timeout)
        info = client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._drop(key)
            return False
        if qos == 0:
            return True
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def _drop(self, key: Key) -> None:
        with self._lock:
            client = self._clients.pop(key, None)
        if client is not None:
            client.loop_stop()
            client.disconnect()

    def close(self) -> None:
        """Disconnect every client."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.disconnect()
                client.loop_stop()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass


__all__ = ["MqttPublisher", "parse_endpoint"]
