"""Settings of the IoT agents, from arguments and METROPOLE_AGENT_* variables.

    METROPOLE_AGENT_HOST               127.0.0.1
    METROPOLE_AGENT_PROVISIONING_PORT  4041   provisioning API, /metrics
    METROPOLE_AGENT_HTTP_PORT          7896   southbound HTTP (/iot/json, /iot/d)
    METROPOLE_AGENT_REGISTRY           sqlite:///<data>/agents.db, or postgresql://...?schema=agents
    METROPOLE_AGENT_BROKER_URL         http://127.0.0.1:1026 (a group's cbroker overrides it)
    METROPOLE_AGENT_CONTEXTS           comma-separated @context URLs for the Link header
    METROPOLE_AGENT_MQTT_HOST / _PORT  127.0.0.1 / 1883
    METROPOLE_AGENT_MQTT_TLS           true: MQTT over TLS, the server verified (system CAs, or MQTT_CA)
    METROPOLE_AGENT_MQTT_CA            CA bundle the MQTT server's certificate is verified with (turns TLS on)
    METROPOLE_AGENT_MQTT_CERT / _KEY   client certificate and key, for a Mosquitto with require_certificate
    METROPOLE_AGENT_BROKER_API_KEY     credential sent to the NGSI-LD broker (X-API-Key) when it asks for one
    METROPOLE_AGENT_BROKER_TOKEN       or a bearer token (Authorization: Bearer) for a broker behind OAuth2
    METROPOLE_AGENT_OUTBOX             <data>/outbox.db
    METROPOLE_AGENT_AUTOPROVISION      true: unknown devices of a known group are created
    METROPOLE_AGENT_MAX_MESSAGE_BYTES  262144: a larger message is refused whole (HTTP 413)
    METROPOLE_AGENT_MAX_ATTRIBUTES     1000: measures in one message (all its groups) beyond which it is refused
    METROPOLE_AGENT_MAX_VALUE_LENGTH   4096: characters of one value (a string, or a structure's JSON)
                                       beyond which that attribute alone is refused
    METROPOLE_AGENT_CHECK_CBROKER      true: provisioning refuses a group whose cbroker does not answer
    METROPOLE_AGENT_COMMAND_TIMEOUT    60: seconds a command may stay PENDING/DELIVERED before EXPIRED
    METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT  3600: the same for LoRaWAN devices, which take a downlink only
                                       after their next uplink (class A)
    METROPOLE_AGENT_LORAWAN_SERVERS    named LoRaWAN network servers, JSON {"<name>": {"provider", "host", "port",
                                       "protocol", "username", "password"}}: a provisioning's
                                       `application_server: {"name": ...}` uses one (its credentials stay here,
                                       out of the registry)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from models.context.core import CORE_CONTEXT_URL
from models.context.smart_data_models import SDM_ALL_CONTEXT_URL
from web.settings import EnvFlag, EnvFloat, EnvInt, EnvSettings, load, var

DEFAULT_CONTEXTS: tuple[str, ...] = (SDM_ALL_CONTEXT_URL, CORE_CONTEXT_URL)
VERSION = "0.1.0"


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, lower case, the port explicit (what the cbroker allow-list compares)."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return url
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _urls(raw: object) -> object:
    # "a, b" -> ("a", "b"); "" leaves the default contexts; "," is no context at all, as before
    if not isinstance(raw, str):
        return raw
    return tuple(u.strip() for u in raw.split(",") if u.strip()) if raw else None


class AgentEnv(EnvSettings):
    """The variables of `AgentSettings` (see the module docstring). Set but empty, a text is "" and a flag off."""

    host: str = var("METROPOLE_AGENT_HOST")
    provisioning_port: EnvInt = var("METROPOLE_AGENT_PROVISIONING_PORT")
    http_port: EnvInt = var("METROPOLE_AGENT_HTTP_PORT")
    data_dir: Path = var("METROPOLE_AGENT_DATA")
    registry_url: str = var("METROPOLE_AGENT_REGISTRY")
    broker_url: str = var("METROPOLE_AGENT_BROKER_URL")
    contexts: Annotated[tuple[str, ...] | None, NoDecode, BeforeValidator(_urls)] = var("METROPOLE_AGENT_CONTEXTS")
    mqtt_host: str = var("METROPOLE_AGENT_MQTT_HOST")
    mqtt_port: EnvInt = var("METROPOLE_AGENT_MQTT_PORT")
    mqtt_tls: EnvFlag = var("METROPOLE_AGENT_MQTT_TLS")
    mqtt_ca: str = var("METROPOLE_AGENT_MQTT_CA")
    mqtt_cert: str = var("METROPOLE_AGENT_MQTT_CERT")
    mqtt_key: str = var("METROPOLE_AGENT_MQTT_KEY")
    broker_api_key: str = var("METROPOLE_AGENT_BROKER_API_KEY")
    broker_token: str = var("METROPOLE_AGENT_BROKER_TOKEN")
    outbox_path: str = var("METROPOLE_AGENT_OUTBOX")
    autoprovision: EnvFlag = var("METROPOLE_AGENT_AUTOPROVISION")
    max_message_bytes: EnvInt = var("METROPOLE_AGENT_MAX_MESSAGE_BYTES")
    max_attributes: EnvInt = var("METROPOLE_AGENT_MAX_ATTRIBUTES")
    max_value_length: EnvInt = var("METROPOLE_AGENT_MAX_VALUE_LENGTH")
    check_cbroker: EnvFlag = var("METROPOLE_AGENT_CHECK_CBROKER")
    cbroker_allowed: str = var("METROPOLE_AGENT_CBROKER_ALLOWED")
    max_provisioning_bytes: EnvInt = var("METROPOLE_AGENT_MAX_PROVISIONING_BYTES")
    command_timeout: EnvFloat = var("METROPOLE_AGENT_COMMAND_TIMEOUT")
    lorawan_command_timeout: EnvFloat = var("METROPOLE_AGENT_LORAWAN_COMMAND_TIMEOUT")
    lorawan_servers: str = var("METROPOLE_AGENT_LORAWAN_SERVERS")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Where the agents listen, what they store into, and where they deliver."""

    host: str = "127.0.0.1"
    provisioning_port: int = 4041
    http_port: int = 7896
    data_dir: Path = Path("./data")
    registry_url: str = ""
    broker_url: str = "http://127.0.0.1:1026"
    contexts: tuple[str, ...] = DEFAULT_CONTEXTS
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_tls: bool = False  # as iotagent-json's IOTA_MQTT_PROTOCOL=mqtts, IOTA_MQTT_CA/_CERT/_KEY (configService.js:179-193)
    mqtt_ca: str = ""
    mqtt_cert: str = ""
    mqtt_key: str = ""
    broker_api_key: str = ""  # the broker's credential (web/auth): `metropole run` makes one when auth is on
    broker_token: str = ""
    outbox_path: str = ""
    autoprovision: bool = True
    default_resource_json: str = "/iot/json"
    default_resource_ul: str = "/iot/d"
    dead_letter_payload_max: int = 4096
    # Limits for sensor data: a message of a few readings is well under a kilobyte; a gateway's batch of a
    # few hundred measure groups stays under these. Beyond them a message is a fault or an attack, and
    # storing it would put megabytes into an entity and its history.
    max_message_bytes: int = 256 * 1024
    max_attributes: int = 1000
    max_value_length: int = 4096
    check_cbroker: bool = True
    # which brokers a service group's `cbroker` may name (issue 17): "" the configured broker_url only,
    # "*" any, else a comma-separated list of origins (http://orion:1026,https://broker.example)
    cbroker_allowed: str = ""
    max_provisioning_bytes: int = 8 << 20  # a provisioning API body (groups, devices): 413 beyond
    command_timeout: float = 60.0
    lorawan_command_timeout: float = 3600.0
    lorawan_servers: str = ""  # JSON, agents.lorawan.provisioning.parse_servers
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def resolved_registry_url(self) -> str:
        """The registry URL, defaulting to a SQLite file in the data folder."""
        return self.registry_url or f"sqlite:///{(self.data_dir / 'agents.db').resolve()}"

    def allowed_cbrokers(self) -> frozenset[str] | None:
        """The origins a group's `cbroker` may name (None: any), from `cbroker_allowed`."""
        if self.cbroker_allowed.strip() == "*":
            return None
        listed = [u.strip() for u in self.cbroker_allowed.split(",") if u.strip()] or [self.broker_url]
        return frozenset(origin(u) for u in listed)

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of the MQTT client, None for plain MQTT; the server is always verified."""
        if not (self.mqtt_tls or self.mqtt_ca or self.mqtt_cert):
            return None
        from web.tls import client_context

        return client_context(self.mqtt_ca or None, self.mqtt_cert or None, self.mqtt_key or None)

    def broker_headers(self) -> dict[str, str]:
        """The credential headers of every request to the NGSI-LD broker (none when none is configured)."""
        if self.broker_token:
            return {"Authorization": f"Bearer {self.broker_token}"}
        return {"X-API-Key": self.broker_api_key} if self.broker_api_key else {}

    @property
    def resolved_outbox_path(self) -> Path:
        return Path(self.outbox_path) if self.outbox_path else self.data_dir / "outbox.db"

    @classmethod
    def from_env(cls, **overrides: object) -> AgentSettings:
        """Defaults, overridden by METROPOLE_AGENT_* variables, overridden by arguments (None ignored).

        A bad value is a `web.settings.SettingsError` (a ValueError) naming its variable."""
        values: dict[str, Any] = load(AgentEnv)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("data_dir"), str):
            values["data_dir"] = Path(values["data_dir"])
        if isinstance(values.get("contexts"), list):
            values["contexts"] = tuple(values["contexts"])
        return cls(**values)
