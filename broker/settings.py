"""Settings of one embedded broker instance, from arguments and METROPOLE_BROKER_* variables."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broker.limits import Limits


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
        """Defaults, overridden by METROPOLE_BROKER_* variables, overridden by arguments (None ignored)."""
        env = os.environ
        values: dict[str, Any] = {  # field name -> value, each of the field's type (checked by the tests)
            "store_url": env.get("METROPOLE_BROKER_STORE", ""),
            "default_limit": int(env.get("METROPOLE_BROKER_DEFAULT_LIMIT", "20")),
            "max_limit": int(env.get("METROPOLE_BROKER_MAX_LIMIT", "1000")),
            "temporal_limit": int(env.get("METROPOLE_BROKER_TEMPORAL_LIMIT", "10000")),
            "context_timeout": float(env.get("METROPOLE_CONTEXT_TIMEOUT", "5")),
            "context_max_bytes": int(env.get("METROPOLE_CONTEXT_MAX_BYTES", str(1 << 20))),
            "context_failure_ttl": float(env.get("METROPOLE_CONTEXT_FAILURE_TTL", "30")),
            "context_workers": int(env.get("METROPOLE_CONTEXT_WORKERS", "4")),
            "context_allowed_hosts": frozenset(h.strip().lower() for h in env["METROPOLE_CONTEXT_ALLOWED_HOSTS"].split(",")
                                               if h.strip()) if env.get("METROPOLE_CONTEXT_ALLOWED_HOSTS") else None,
            "context_refuse_private": env.get("METROPOLE_CONTEXT_REFUSE_PRIVATE", "").lower() in ("1", "true", "yes", "on"),
            "limits": Limits.from_env(),
            "federation_timeout": float(env.get("METROPOLE_BROKER_FEDERATION_TIMEOUT", "5")),
            "public_url": env.get("METROPOLE_BROKER_PUBLIC_URL", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("data_dir"), str):
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)


def notification_tls_context() -> ssl.SSLContext:
    """TLS of `mqtts://` notification endpoints (clause 7.2): the MQTT server verified, optionally a client certificate.

        METROPOLE_BROKER_MQTT_CA           CA bundle for the subscribers' MQTT servers (default: the system's)
        METROPOLE_BROKER_MQTT_CERT / _KEY  client certificate and key, for servers that require one
    """
    from web.tls import client_context

    env = os.environ
    return client_context(env.get("METROPOLE_BROKER_MQTT_CA") or None, env.get("METROPOLE_BROKER_MQTT_CERT") or None,
                          env.get("METROPOLE_BROKER_MQTT_KEY") or None)
