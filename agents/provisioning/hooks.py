"""What else happens when provisioning changes a group or a device (the runtime fills these in).

    group_changed(old, new)      a group's cbroker changed: its waiting outbox rows follow it
    device_changed(old, new)     a device's commands changed: the command service (un)subscribes
    check_cbroker                whether provisioning tries to connect to a group's cbroker
    lorawan_servers              the named LoRaWAN network servers a provisioning may refer to
                                 (METROPOLE_AGENT_LORAWAN_SERVERS, agents.lorawan.provisioning)

The provisioning API works without any (the defaults do nothing), as tests
of the API alone use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from models.vocabulary import Doc

__all__ = ["Hooks"]


async def _nothing(_old: Doc | None, _new: Doc | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callbacks run after a successful provisioning write (old and new documents; None: none)."""

    group_changed: Callable[[Doc | None, Doc | None], Awaitable[None]] = _nothing
    device_changed: Callable[[Doc | None, Doc | None], Awaitable[None]] = _nothing
    check_cbroker: bool = False
    allowed_cbrokers: frozenset[str] | None = None  # origins a group's cbroker may name (None: any)
    lorawan_servers: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
