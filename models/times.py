"""RFC 3339 timestamps in UTC as the platform writes them: `2026-11-26T07:00:00.000Z`.

One formatter for the system attributes (createdAt, modifiedAt: milliseconds),
the agents' reception times (microseconds) and the operators' listings; the
current instant; and the DateTime members of subscriptions and registrations
read back as aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from models.errors import BadRequestData

__all__ = ["now_utc", "parse_utc", "utc_iso"]


def now_utc() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def utc_iso(moment: datetime | float | None = None,
            timespec: Literal["seconds", "milliseconds", "microseconds"] = "milliseconds") -> str:
    """`moment` in UTC with a `Z`: now by default, else a POSIX timestamp or a datetime (a naive one is UTC).

    `timespec` is datetime.isoformat's: milliseconds (what system attributes carry), microseconds or seconds.
    """
    if moment is None:
        when = datetime.now(UTC)
    elif isinstance(moment, datetime):
        when = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    else:
        when = datetime.fromtimestamp(moment, UTC)
    return when.isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc(value: object, name: str) -> datetime:
    """A DateTime member `name` (clause 4.6.3) as an aware datetime (a naive one is UTC), else BadRequestData.

    Looser than models.validation.parse_datetime (any form datetime.fromisoformat reads): what subscriptions
    and registrations have always accepted for expiresAt, timeInterval and temporalQ.
    """
    if not isinstance(value, str):
        raise BadRequestData(f"{name} must be a DateTime string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequestData(f"{name} {value!r} is not a valid DateTime") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
