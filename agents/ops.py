"""The agents' operational surface: authentication of the provisioning API, /health, /ready, access log.

    provisioning API (4041)  Authenticate (web.auth.policy.PROVISIONING), /health, /ready, access log
    device HTTP (7896)       /health, /ready, access log; devices authenticate with their API key,
                             as with the FIWARE agents, so no platform credential is asked there

Readiness: the device registry answers, the outbox is open, and the MQTT
client is connected (when MQTT is on).
"""

from __future__ import annotations

from typing import Any

import orjson

from web.health import Check

_NAMES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "ACCESS_FORBIDDEN", 503: "SERVICE_UNAVAILABLE"}


def provisioning_error(status: int, title: str, detail: str) -> tuple[bytes, str]:
    """The `{"name", "message"}` shape of iotagent-node-lib's errors (ACCESS_FORBIDDEN is its name for 403)."""
    return orjson.dumps({"name": _NAMES.get(status, title.upper()), "message": detail}), "application/json"


def readiness_checks(runtime: Any) -> dict[str, Check]:
    """Registry, outbox and MQTT of an AgentRuntime."""

    async def registry() -> str | None:
        if runtime.registry is None:
            return "not open"
        await runtime.registry.list_dead_letters(limit=1, offset=0)
        return None

    async def outbox() -> str | None:
        if runtime.outbox is None:
            return "not open"
        _ = runtime.outbox.depth  # a read of the outbox's SQLite file
        return None

    async def mqtt() -> str | None:
        if runtime.mqtt is None:
            return None  # MQTT off
        return None if runtime.mqtt.connected.is_set() else "not connected to the MQTT broker"

    return {"registry": registry, "outbox": outbox, "mqtt": mqtt}


def wire_provisioning(app: Any, runtime: Any, authenticator: Any = None) -> None:
    """Authentication (the provisioning policy), health/readiness and the access log on the provisioning app."""
    from web.auth import Authenticate, Authenticator
    from web.auth.policy import PROVISIONING
    from web.tenants import TenantNames

    auth = authenticator if authenticator is not None else Authenticator.from_env()
    app.add_middleware(TenantNames, render=provisioning_error)
    app.add_middleware(Authenticate, authenticator=auth, policy=PROVISIONING, render=provisioning_error)
    wire_device_http(app, runtime)


def wire_device_http(app: Any, runtime: Any) -> None:
    """Health/readiness and the access log (devices authenticate with their group's API key)."""
    from web.access_log import AccessLog
    from web.health import Health

    app.add_middleware(Health, checks=lambda: readiness_checks(runtime))
    app.add_middleware(AccessLog)


def wire(provisioning_app: Any, http_app: Any, runtime: Any, authenticator: Any = None) -> None:
    """Both apps of an AgentRuntime."""
    wire_provisioning(provisioning_app, runtime, authenticator)
    wire_device_http(http_app, runtime)
