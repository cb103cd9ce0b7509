"""Settings of the QuantumLeap-compatible API, from METROPOLE_HISTORY_* variables.

    METROPOLE_HISTORY_SHAPES      1.0 (default): answers as the QuantumLeap 1.0.0 release
                                  (entityId/entityType, 404 Not Found when nothing matches);
                                  master: as its master branch after PR #754 (id/type) and
                                  PR #752 (200 [] when nothing matches)
    METROPOLE_HISTORY_BROKER_URL  the broker /v2/subscribe subscribes to when the request
                                  names no orionUrl (default: this process's embedded broker)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

Shapes = Literal["1.0", "master"]


@dataclass(frozen=True, slots=True)
class QuantumLeapSettings:
    """How the /v2 API answers and where /v2/subscribe subscribes."""

    shapes: Shapes = "1.0"
    broker_url: str | None = None

    @classmethod
    def from_env(cls) -> QuantumLeapSettings:
        """Defaults overridden by the environment; an unknown shape is an error at start-up, not at a request."""
        name = os.environ.get("METROPOLE_HISTORY_SHAPES", "1.0").strip() or "1.0"
        shapes: Shapes
        if name == "1.0":
            shapes = "1.0"
        elif name == "master":
            shapes = "master"
        else:
            raise ValueError(f"METROPOLE_HISTORY_SHAPES must be 1.0 or master, got {name!r}")
        return cls(shapes, os.environ.get("METROPOLE_HISTORY_BROKER_URL") or None)
