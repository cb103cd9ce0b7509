"""What a LoRaWAN network server hands over, whichever it is: one uplink, and one downlink to publish.

The Things Stack and ChirpStack wrap the same facts in different JSON
(tts.py, chirpstack.py); both parse into :class:`Uplink`, so what comes after
(codec, profile, mapping) does not know which network server a device uses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from agents.mapping.timestamps import to_utc

__all__ = ["Downlink", "EnvelopeError", "Gateway", "Uplink", "b64decode", "dev_eui", "json_object", "timestamp"]

_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")


class EnvelopeError(ValueError):
    """A network server message that is not a readable uplink; the message says why."""


class Gateway(NamedTuple):
    """One gateway's reception of an uplink."""

    gateway_id: str
    rssi: float | None  # dBm
    snr: float | None  # dB


class Uplink(NamedTuple):
    """One device uplink as the network server forwarded it."""

    network: str  # "tts" or "chirpstack"
    dev_eui: str  # 16 upper-case hex digits
    device_name: str | None  # the network server's own name for the device
    application: str | None
    tenant: str | None
    fport: int
    payload: bytes  # FRMPayload, decrypted
    fcnt: int | None
    decoded: dict[str, Any] | None  # what the network server's own payload formatter decoded, if any
    received_at: str | None  # RFC 3339 UTC
    gateways: tuple[Gateway, ...]

    @property
    def rssi(self) -> float | None:
        """The best RSSI among the gateways that heard it."""
        values = [g.rssi for g in self.gateways if g.rssi is not None]
        return max(values) if values else None

    @property
    def snr(self) -> float | None:
        """The best SNR among the gateways that heard it."""
        values = [g.snr for g in self.gateways if g.snr is not None]
        return max(values) if values else None


class Downlink(NamedTuple):
    """An MQTT message that queues a downlink at the network server."""

    topic: str
    body: bytes


def json_object(body: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The JSON object of a message body (already parsed or not)."""
    if isinstance(body, Mapping):
        return body
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"{what} is a JSON {type(doc).__name__}, not an object")
    return doc


def dev_eui(value: Any, where: str) -> str:
    """A DevEUI as 16 upper-case hex digits."""
    if not isinstance(value, str) or not _EUI.match(value):
        raise EnvelopeError(f"{where} must be a DevEUI of 16 hex digits, not {value!r}")
    return value.upper()


def b64decode(value: Any, where: str) -> bytes:
    """Base64 text (standard alphabet, padded) to bytes."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise EnvelopeError(f"{where} must be base64 text, not {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{where} is not valid base64: {value[:40]!r}") from None


def b64encode(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def timestamp(value: Any, where: str) -> str | None:
    """An RFC 3339 time to the UTC form observedAt takes; None when absent."""
    if value is None:
        return None
    try:
        return to_utc(value) if isinstance(value, str) else None
    except ValueError:
        raise EnvelopeError(f"{where} is not an RFC 3339 time: {value!r}") from None


def integer(value: Any, where: str, low: int, high: int, default: int | None = None) -> int | None:
    """An integer field within bounds (absent: the default)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EnvelopeError(f"{where} must be an integer {low}..{high}, not {value!r}")
    return value


def records(value: Any, where: str) -> list[Mapping[str, Any]]:
    """A list of objects (radio metadata): absent is empty, anything else but a list is an error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise EnvelopeError(f"{where} must be a list, not {type(value).__name__}")
    return [item for item in value if isinstance(item, Mapping)]


def number(value: Any) -> float | None:
    """A radio figure, None when absent or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
