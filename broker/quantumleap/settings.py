"""Settings of the QuantumLeap-compatible API, from METROPOLE_HISTORY_* variables.

    METROPOLE_HISTORY_SHAPES      1.0 (default): answers as the QuantumLeap 1.0.0 release
                                  (entityId/entityType, 404 Not Found when nothing matches);
                                  master: as its master branch after PR #754 (id/type) and
                                  PR #752 (200 [] when nothing matches)
    METROPOLE_HISTORY_BROKER_URL  the broker /v2/subscribe subscribes to when the request
                                  names no orionUrl (default: this process's embedded broker)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator

from web.settings import EnvSettings, load, var

Shapes = Literal["1.0", "master"]


def _shapes(raw: object) -> object:
    # surrounding blanks ignored and empty is the default, as before; anything else is an error at start-up
    if not isinstance(raw, str):
        return raw
    name = raw.strip() or "1.0"
    if name not in ("1.0", "master"):
        raise ValueError("must be 1.0 or master")
    return name


class QuantumLeapEnv(EnvSettings):
    """The variables of `QuantumLeapSettings`."""

    shapes: Annotated[Shapes, BeforeValidator(_shapes)] = var("METROPOLE_HISTORY_SHAPES")
    broker_url: str = var("METROPOLE_HISTORY_BROKER_URL")


@dataclass(frozen=True, slots=True)
class QuantumLeapSettings:
    """How the /v2 API answers and where /v2/subscribe subscribes."""

    shapes: Shapes = "1.0"
    broker_url: str | None = None

    @classmethod
    def from_env(cls) -> QuantumLeapSettings:
        """Defaults overridden by the environment; an unknown shape is an error at start-up, not at a request."""
        values = load(QuantumLeapEnv)
        return cls(values.get("shapes", "1.0"), values.get("broker_url") or None)
