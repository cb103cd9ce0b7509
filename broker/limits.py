"""Input limits of the broker (issue 17): what one request may carry, read from METROPOLE_BROKER_* variables.

    METROPOLE_BROKER_MAX_BODY_BYTES        8388608  a request body (413 beyond, before it is read whole)
    METROPOLE_BROKER_MAX_BATCH_ENTITIES     10000  entities of one batch operation (400)
    METROPOLE_BROKER_MAX_ID_BYTES             1024  an entity or subscription id, UTF-8 bytes (400);
                                                    PostgreSQL's index cannot hold a key past about 2,700
    METROPOLE_BROKER_MAX_DEPTH                  64  nesting of objects and arrays in a body (400)
    METROPOLE_BROKER_MAX_ATTRIBUTES           1000  attributes of one entity (400)
    METROPOLE_BROKER_MAX_Q_LENGTH             8192  characters of q, scopeQ, a type selection (400)
    METROPOLE_BROKER_MAX_Q_DEPTH                32  nested parentheses in q (400)
    METROPOLE_BROKER_MAX_PATTERN_LENGTH       1024  a client's regular expression (idPattern, q ~=) (400)
    METROPOLE_BROKER_MAX_GEOMETRY_POINTS     20000  positions of a query geometry or a body's geometry (400)
    METROPOLE_BROKER_MAX_SUBSCRIPTIONS        1000  subscriptions of one tenant (400)

Every refusal is an NGSI-LD ProblemDetails: BadRequestData (400), except a
body past its size (413, clause 6.3.2's "Request Entity too large") and a
tenant past its subscriptions (BadRequestData too: the spec has no quota
error type). The limits are process-wide: the broker reads them once at
start (`configure`), and deep layers (the q parser, the geometry reader)
ask `current()` instead of threading settings through every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may carry; see the module docstring for each field's variable and default."""

    max_body_bytes: int = 8 << 20
    max_batch_entities: int = 10_000
    max_id_bytes: int = 1024
    max_depth: int = 64
    max_attributes: int = 1000
    max_q_length: int = 8192
    max_q_depth: int = 32
    max_pattern_length: int = 1024
    max_geometry_points: int = 20_000
    max_subscriptions: int = 1000

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults overridden by METROPOLE_BROKER_<FIELD> (upper case); a bad value is a ValueError naming it."""
        values: dict[str, int] = {}
        for f in fields(cls):
            name = "METROPOLE_BROKER_" + f.name.upper()
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a whole number") from None
            if value < 1:
                raise ValueError(f"{name}={raw!r} must be at least 1")
            values[f.name] = value
        return cls(**values)


_current = Limits()


def current() -> Limits:
    """The limits in force in this process."""
    return _current


def configure(limits: Limits) -> None:
    """Put `limits` in force (the broker's start-up does, from its settings)."""
    global _current
    _current = limits
