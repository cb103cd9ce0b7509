"""A LoRaWAN device's provisioning: FIWARE IoTagent-LoRaWAN's `internal_attributes.lorawan`, plus our codec.

The shape is IoTagent-LoRaWAN's (Atos-Research-and-Innovation/IoTagent-LoRaWAN
commit 647cf97, `lib/iotagent-lora.js:242-349` registerApplicationServer, which
requires application_server.host and .provider, app_eui and application_id;
`lib/bindings/mqttClient.js:45-70` for host/port/protocol/username/password;
`lib/dataTranslationService.js:56-62` for data_model; `docs/users_manual.md`
for TTS v3 application ids `{application id}@{tenant id}`), on a group or a
device, the device's over its group's:

    "internal_attributes": {"lorawan": {
        "application_server": {"host", "port", "protocol": "mqtt" | "mqtts", "username", "password",
                               "provider": "TTN" | "chirpstack" | "loraserver.io",
                               "name": <a network server of METROPOLE_AGENT_LORAWAN_SERVERS>},   (ours)
        "application_id": "aix-air@metropole" (TTS: app[@tenant]) | "<ChirpStack application UUID>",
        "app_eui", "application_key": accepted and kept, not used (TTS v3 and ChirpStack v4 need neither),
        "dev_eui": "70B3D57ED0000001",                    (devices: their identity)
        "data_model": "cayennelpp" | "application_server",
        "codec": "decentlab/dl-pm",                        (ours: the vendor codec, agents/codecs/)
        "calibration": {...},                              (ours: a device's sheet, codecs with decoder_for)
        "end_device_id": "dlpm-1",                         (ours: TTS's device id for downlinks; default device_id)
        "period": 900                                      (ours: seconds a report covers, NoiseLevelObserved)
    }}

`internal_attributes` may also be a list holding an object with `lorawan`, as
IoTagent-LoRaWAN reads it. Without an application_server host there is no MQTT
connection: uplinks come by webhook (TTS) or HTTP integration (ChirpStack) only.
Every error is a :class:`ConfError` naming the field, for a 400 at provisioning.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from types import MappingProxyType
from typing import Any

import orjson

from agents.lorawan.catalog import Codec, UnknownCodec, catalog, codec_for

__all__ = ["LORAWAN", "Broker", "ConfError", "LorawanConf", "codec_of", "conf", "is_lorawan", "is_lorawan_device", "parse_servers",
           "section"]

LORAWAN = "LORAWAN"  # the `transport` of a LoRaWAN device (ours: IoTagent-LoRaWAN has no transport field)
FIELD = "internal_attributes.lorawan"
#: provider names (compared case-insensitively) -> the network server kind: IoTagent-LoRaWAN's TTN, chirpstack,
#: loraserver.io (iotagent-lora.js:320-333), and TTS, the name The Things Stack goes by since v3
PROVIDERS: Mapping[str, str] = MappingProxyType({
    "ttn": "tts", "tts": "tts", "thethingsstack": "tts", "chirpstack": "chirpstack", "loraserver.io": "chirpstack",
})
DATA_MODELS = ("cayennelpp", "application_server", "cbor")
_TLS = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")
_TOPIC_LEVEL = re.compile(r"^[^/+#\s]+$")  # an id that goes into an MQTT topic: no level separator, no wildcard


class ConfError(ValueError):
    """A LoRaWAN provisioning that cannot work; `field` is its path from the device or group document."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a network server's MQTT integration is reached: the identity of one connection."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = None

    def __str__(self) -> str:  # for logs: never the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.username + '@' if self.username else ''}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LorawanConf:
    """A device's effective LoRaWAN provisioning (its own over its group's)."""

    network: str  # "tts" | "chirpstack"
    application_id: str  # TTS: the application id without the tenant; ChirpStack: the application UUID
    tenant: str | None  # TTS tenant (`app@tenant`), None for TTS open source and ChirpStack
    dev_eui: str | None  # 16 upper-case hex digits; None on a group
    codec_id: str | None  # None: the network server's own decoded payload (data_model application_server)
    broker: Broker | None  # None: no MQTT, uplinks by webhook / HTTP integration only
    end_device_id: str | None = None  # TTS's device id (downlink topics); None: the device_id
    period_s: float | None = None
    calibration: Mapping[str, float] | None = None

    @property
    def tts_application(self) -> str:
        """`app@tenant` as TTS topics and usernames write it (`app` without a tenant)."""
        return f"{self.application_id}@{self.tenant}" if self.tenant else self.application_id

    @property
    def downlink_qos(self) -> int:
        """The Things Stack's MQTT server takes QoS 0 only (its MQTT Server page); ChirpStack's broker QoS 1."""
        return 0 if self.network == "tts" else 1


def section(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `lorawan` object of a group or device's internal_attributes (an object, or a list holding one)."""
    internal = (doc or {}).get("internal_attributes")
    if isinstance(internal, list):
        internal = next((i for i in internal if isinstance(i, dict) and "lorawan" in i), None)
    found = internal.get("lorawan") if isinstance(internal, dict) else None
    return found if isinstance(found, dict) else None


def is_lorawan(doc: Mapping[str, Any] | None) -> bool:
    """Whether a group or device document speaks LoRaWAN (its transport says so, or it has a lorawan section)."""
    return str((doc or {}).get("transport") or "").upper() == LORAWAN or section(doc) is not None


def is_lorawan_device(device: Mapping[str, Any] | None, group: Mapping[str, Any] | None) -> bool:
    """Whether a device speaks LoRaWAN: it says so, or it names no transport and its group is a LoRaWAN one."""
    return is_lorawan(device) or (section(group) is not None and not (device or {}).get("transport"))


def parse_servers(text: str) -> Mapping[str, Mapping[str, Any]]:
    """METROPOLE_AGENT_LORAWAN_SERVERS: `{"<name>": {<application_server fields>}}` (JSON), checked."""
    if not text.strip():
        return MappingProxyType({})
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"METROPOLE_AGENT_LORAWAN_SERVERS is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError('METROPOLE_AGENT_LORAWAN_SERVERS must be {"<name>": {"provider": ..., "host": ...}, ...}')
    for name, server in doc.items():
        try:
            _broker(server, "")
            _network(server, "")
        except ConfError as exc:
            raise ValueError(f"METROPOLE_AGENT_LORAWAN_SERVERS[{name!r}]{exc.field}: {exc.message}") from None
    return MappingProxyType(doc)


def _merged(device: Mapping[str, Any] | None, group: Mapping[str, Any] | None) -> dict[str, Any]:
    """The device's lorawan section over its group's; application_server merged member by member."""
    g, d = section(group) or {}, section(device) or {}
    out = {**g, **d}
    servers = [s for s in (g.get("application_server"), d.get("application_server")) if s is not None]
    if servers:
        out["application_server"] = ({**servers[0], **servers[1]} if len(servers) == 2
                                     and all(isinstance(s, dict) for s in servers) else servers[-1])
    return out


def _server(lw: Mapping[str, Any], servers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    where = f"{FIELD}.application_server"
    given = lw.get("application_server")
    if not isinstance(given, dict):
        raise ConfError(where, "application_server is required: {\"provider\": \"TTN\" | \"chirpstack\", \"host\": ...}"
                        " (no host: uplinks by webhook / HTTP integration only)")
    name = given.get("name")
    if name is None:
        return dict(given)
    if not isinstance(name, str) or name not in servers:
        known = ", ".join(servers) or "none: the setting is empty"
        raise ConfError(f"{where}.name", f"no network server {name!r} in METROPOLE_AGENT_LORAWAN_SERVERS (known: {known})")
    return {**servers[name], **{k: v for k, v in given.items() if k != "name"}}


def _network(server: Mapping[str, Any], where: str) -> str:
    provider = server.get("provider")
    network = PROVIDERS.get(provider.strip().lower()) if isinstance(provider, str) else None
    if network is None:
        raise ConfError(f"{where}.provider", f"provider {provider!r} is not one of TTN (The Things Stack v3), chirpstack"
                        " (ChirpStack v4), loraserver.io")
    return network


def _broker(server: Mapping[str, Any], where: str) -> Broker | None:
    host = server.get("host")
    if host is None or host == "":
        return None
    if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", host):
        raise ConfError(f"{where}.host", f"host {host!r} is not a host name or address")
    protocol = str(server.get("protocol") or "mqtt").lower()
    if protocol not in _TLS:
        raise ConfError(f"{where}.protocol", f"protocol {protocol!r} is not mqtt or mqtts")
    tls = _TLS[protocol]
    port = server.get("port", 8883 if tls else 1883)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfError(f"{where}.port", f"port {port!r} is not a TCP port")
    creds = []
    for key in ("username", "password"):
        value = server.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfError(f"{where}.{key}", f"{key} must be a string")
        creds.append(value or None)
    return Broker(host, port, tls, creds[0], creds[1])


def _ident(value: Any, field: str, what: str) -> str:
    if not isinstance(value, str) or not _TOPIC_LEVEL.match(value):
        raise ConfError(field, f"{what} {value!r} must be text without '/', '+', '#' or spaces (it names an MQTT topic)")
    return value


def _codec(lw: Mapping[str, Any], required: bool) -> str | None:
    codec, model = lw.get("codec"), lw.get("data_model")
    if model is not None and model not in DATA_MODELS:
        raise ConfError(f"{FIELD}.data_model", f"data_model {model!r} is not one of {', '.join(DATA_MODELS)}")
    if model == "cbor":
        raise ConfError(f"{FIELD}.data_model", "data_model 'cbor' is not supported: name the device's codec"
                        f" ({FIELD}.codec; known: {', '.join(catalog())})")
    if codec is not None:
        if not isinstance(codec, str):
            raise ConfError(f"{FIELD}.codec", "codec must be a codec id such as 'decentlab/dl-pm'")
        try:
            found = codec_for(codec).id
        except UnknownCodec as exc:
            raise ConfError(f"{FIELD}.codec", str(exc)) from None
        if model == "application_server" or (model == "cayennelpp" and found != "cayenne/lpp"):
            raise ConfError(f"{FIELD}.data_model", f"data_model {model!r} contradicts codec {found!r}: give one of them")
        return found
    if model == "cayennelpp":
        return "cayenne/lpp"
    if model is None and required:
        raise ConfError(f"{FIELD}.codec", "a LoRaWAN device needs its codec (the vendor model: "
                        f"{', '.join(catalog())}), or data_model 'application_server' to take the network server's"
                        " decoded payload")
    return None


def _calibration(lw: Mapping[str, Any]) -> Mapping[str, float] | None:
    sheet = lw.get("calibration")
    if sheet is None:
        return None
    if not isinstance(sheet, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in sheet.values()):
        raise ConfError(f"{FIELD}.calibration", "calibration must be an object of numbers (the device's sheet)")
    return MappingProxyType(dict(sheet))


def conf(device: Mapping[str, Any] | None, group: Mapping[str, Any] | None,
         servers: Mapping[str, Mapping[str, Any]] = MappingProxyType({}), *, is_device: bool = True) -> LorawanConf:
    """The effective LoRaWAN provisioning of a device (or, `is_device=False`, of a group alone); ConfError if unusable."""
    lw = _merged(device, group)
    server = _server(lw, servers)
    where = f"{FIELD}.application_server"
    network = _network(server, where)
    broker = _broker(server, where)
    app = lw.get("application_id")
    if app is None or app == "":
        raise ConfError(f"{FIELD}.application_id", "application_id is required (TTS: the application id, with"
                        " '@<tenant>' on multi-tenant deployments; ChirpStack: the application's UUID)")
    _ident(app, f"{FIELD}.application_id", "application_id")
    application, _, tenant = str(app).partition("@")
    if network == "chirpstack" and tenant:
        raise ConfError(f"{FIELD}.application_id", "a ChirpStack application id has no '@<tenant>'")
    eui = lw.get("dev_eui")
    if eui is not None and (not isinstance(eui, str) or not _EUI.match(eui)):
        raise ConfError(f"{FIELD}.dev_eui", f"dev_eui {eui!r} is not a DevEUI (16 hex digits)")
    if is_device and eui is None:
        raise ConfError(f"{FIELD}.dev_eui", "dev_eui is required: the DevEUI (16 hex digits) identifies the device")
    end_device = lw.get("end_device_id")
    if end_device is not None:
        _ident(end_device, f"{FIELD}.end_device_id", "end_device_id")
    period = lw.get("period")
    if period is not None and (isinstance(period, bool) or not isinstance(period, (int, float)) or period <= 0):
        raise ConfError(f"{FIELD}.period", f"period {period!r} must be a number of seconds above 0")
    for key in ("app_eui", "application_key"):
        if lw.get(key) is not None and not isinstance(lw[key], str):
            raise ConfError(f"{FIELD}.{key}", f"{key} must be a string")
    found = LorawanConf(network, application, tenant or None, eui.upper() if isinstance(eui, str) else None,
                        _codec(lw, is_device), broker, end_device, float(period) if period is not None else None,
                        _calibration(lw))
    codec_of(found)  # a calibration the codec cannot take fails here, not at the first uplink
    return found


def codec_of(found: LorawanConf) -> Codec | None:
    """The codec a device decodes with: its catalogue codec, built for its calibration sheet when it has one."""
    if found.codec_id is None:
        return None
    if found.calibration is None:
        return codec_for(found.codec_id)
    return _calibrated(found.codec_id, tuple(sorted(found.calibration.items())))


@cache
def _calibrated(codec_id: str, sheet: tuple[tuple[str, float], ...]) -> Codec:
    codec = codec_for(codec_id)
    build = getattr(importlib.import_module(codec.module), "decoder_for", None)
    if build is None:
        raise ConfError(f"{FIELD}.calibration", f"codec {codec_id!r} takes no calibration sheet")
    try:
        return replace(codec, decode_uplink=build(dict(sheet)))
    except ValueError as exc:
        raise ConfError(f"{FIELD}.calibration", f"{codec_id}: {exc}") from None
