"""Settings of one embedded broker instance, from arguments and METROPOLE_BROKER_* variables.

`BrokerEnv` reads the variables (pydantic-settings, web/settings.py); `BrokerSettings`
is the plain dataclass the broker reads at every request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from broker.limits import Limits
from web.settings import TRUE_WORDS, EnvFloat, EnvInt, EnvSettings, load, var


def _hosts(raw: object) -> object:
    # "a, B" -> {"a", "b"}; "" leaves the default (any host); "," is an empty allow-list (no host), as before
    if not isinstance(raw, str):
        return raw
    return frozenset(h.strip().lower() for h in raw.split(",") if h.strip()) if raw else None


def _unstripped_flag(raw: object) -> object:
    # this variable never stripped its value: " true" is off (web.settings.EnvFlag strips)
    return raw.lower() in TRUE_WORDS if isinstance(raw, str) else raw


class BrokerEnv(EnvSettings):
    """The variables of `BrokerSettings` (the limits are `broker.limits.LimitsEnv`)."""

    store_url: str = var("METROPOLE_BROKER_STORE")
    default_limit: EnvInt = var("METROPOLE_BROKER_DEFAULT_LIMIT")
    max_limit: EnvInt = var("METROPOLE_BROKER_MAX_LIMIT")
    temporal_limit: EnvInt = var("METROPOLE_BROKER_TEMPORAL_LIMIT")
    context_timeout: EnvFloat = var("METROPOLE_CONTEXT_TIMEOUT")
    context_max_bytes: EnvInt = var("METROPOLE_CONTEXT_MAX_BYTES")
    context_failure_ttl: EnvFloat = var("METROPOLE_CONTEXT_FAILURE_TTL")
    context_workers: EnvInt = var("METROPOLE_CONTEXT_WORKERS")
    context_allowed_hosts: Annotated[frozenset[str] | None, NoDecode, BeforeValidator(_hosts)] = var(
        "METROPOLE_CONTEXT_ALLOWED_HOSTS")
    context_refuse_private: Annotated[bool, BeforeValidator(_unstripped_flag)] = var("METROPOLE_CONTEXT_REFUSE_PRIVATE")
    federation_timeout: EnvFloat = var("METROPOLE_BROKER_FEDERATION_TIMEOUT")
    public_url: str = var("METROPOLE_BROKER_PUBLIC_URL")


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the broker listens and what it stores into.

    Limits follow the spec's pagination clause (5.5.9): a default page of 20
    and a maximum the broker enforces with TooManyResults (403).
    `temporal_limit` is the most attribute instances one temporal response
    holds before it is cut into pages (206 + Content-Range, clause 6.3.10).
    """

    host: str = "127.0.0.1"
    port: int = 1026
    data_dir: Path = Path("./data")
    store_url: str = ""
    default_limit: int = 20
    max_limit: int = 1000
    temporal_limit: int = 10_000
    context_timeout: float = 5.0
    context_max_bytes: int = 1 << 20
    context_failure_ttl: float = 30.0  # a failed fetch is answered from memory this long
    context_workers: int = 4  # threads of the fetch pool (its own: never those of the rest of the process)
    context_allowed_hosts: frozenset[str] | None = None  # only these hosts are fetched (None: any)
    context_refuse_private: bool = False  # refuse loopback, private and link-local addresses
    limits: Limits = field(default_factory=Limits)  # input limits (broker.limits, METROPOLE_BROKER_MAX_*)
    federation_timeout: float = 5.0
    """seconds a registered context source has to answer a distributed operation (clause 6.3.17)"""
    public_url: str = ""
    """the broker's base URL as context sources reach it (behind a proxy, another host name, https): the relay
    endpoint of subscription copies is built on it; empty: http://HOST:PORT"""

    def __post_init__(self) -> None:
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"the public URL (--public-url, METROPOLE_BROKER_PUBLIC_URL) must be an http(s) URL "
                                 f"without query or fragment, got {self.public_url!r}")

    @property
    def resolved_store_url(self) -> str:
        """The store URL, defaulting to a SQLite file in the data folder."""
        return self.store_url or f"sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides: object) -> BrokerSettings:
        """Defaults, overridden by METROPOLE_BROKER_* variables, overridden by arguments (None ignored).

        A bad value is a `web.settings.SettingsError` (a ValueError) naming its variable."""
        values: dict[str, Any] = {**load(BrokerEnv), "limits": Limits.from_env()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("data_dir"), str):
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)


class NotificationTlsEnv(EnvSettings):
    """The variables of `notification_tls_context` (unset or empty: not used)."""

    ca: str = var("METROPOLE_BROKER_MQTT_CA")
    cert: str = var("METROPOLE_BROKER_MQTT_CERT")
    key: str = var("METROPOLE_BROKER_MQTT_KEY")


def notification_tls_context() -> ssl.SSLContext:
    """TLS of `mqtts://` notification endpoints (clause 7.2): the MQTT server verified, optionally a client certificate.

        METROPOLE_BROKER_MQTT_CA           CA bundle for the subscribers' MQTT servers (default: the system's)
        METROPOLE_BROKER_MQTT_CERT / _KEY  client certificate and key, for servers that require one
    """
    from web.tls import client_context

    tls = load(NotificationTlsEnv)
    return client_context(tls.get("ca") or None, tls.get("cert") or None, tls.get("key") or None)
