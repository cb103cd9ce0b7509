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

from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator

from web.settings import EnvSettings, load, var, whole_number


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
        return cls(**load(LimitsEnv))


def _limit(raw: object) -> object:
    # empty is unset (the default holds), as before; 0 and below would refuse every request
    if raw == "":
        return None
    value = whole_number(raw)
    if isinstance(value, int) and value < 1:
        raise ValueError("must be at least 1")
    return value


Limit = Annotated[int | None, BeforeValidator(_limit)]


class LimitsEnv(EnvSettings):
    """The variables of `Limits`: METROPOLE_BROKER_ and the field's name in upper case (test_limits checks the pairs)."""

    max_body_bytes: Limit = var("METROPOLE_BROKER_MAX_BODY_BYTES")
    max_batch_entities: Limit = var("METROPOLE_BROKER_MAX_BATCH_ENTITIES")
    max_id_bytes: Limit = var("METROPOLE_BROKER_MAX_ID_BYTES")
    max_depth: Limit = var("METROPOLE_BROKER_MAX_DEPTH")
    max_attributes: Limit = var("METROPOLE_BROKER_MAX_ATTRIBUTES")
    max_q_length: Limit = var("METROPOLE_BROKER_MAX_Q_LENGTH")
    max_q_depth: Limit = var("METROPOLE_BROKER_MAX_Q_DEPTH")
    max_pattern_length: Limit = var("METROPOLE_BROKER_MAX_PATTERN_LENGTH")
    max_geometry_points: Limit = var("METROPOLE_BROKER_MAX_GEOMETRY_POINTS")
    max_subscriptions: Limit = var("METROPOLE_BROKER_MAX_SUBSCRIPTIONS")


def _small_body(limits: Limits) -> int:
    """Bytes of JSON below which no parsed body can be past a limit that `broker.http.check_limits` checks.

    Each needs that many bytes at least: nesting past max_depth two brackets a level; a batch past
    max_batch_entities two bytes an item (`[0,0]`); an id past max_id_bytes its bytes and two quotes (an
    escape decodes to fewer bytes than it takes); more than max_attributes members four bytes each
    (`"a":0`); a geometry past max_geometry_points two bytes a number. A NUL is looked for apart (its
    `\\u0000` escape in the raw body).
    """
    return min(2 * (limits.max_depth + 1), 2 * limits.max_batch_entities + 3, limits.max_id_bytes + 3,
               4 * (limits.max_attributes + 1), 4 * limits.max_geometry_points + 2)


_current = Limits()
_small = _small_body(_current)


def current() -> Limits:
    """The limits in force in this process."""
    return _current


def small_body() -> int:
    """Bytes below which a parsed JSON body need not be walked for the limits in force (see _small_body):
    a one-attribute PATCH's body (about 35 bytes) never is (issue 16, patch18)."""
    return _small


def configure(limits: Limits) -> None:
    """Put `limits` in force (the broker's start-up does, from its settings)."""
    global _current, _small
    _current = limits
    _small = _small_body(limits)
