"""RFC 3339 timestamps in UTC as the platform writes them: `2026-11-26T07:00:00.000Z`.

One formatter for the system attributes (createdAt, modifiedAt: milliseconds),
the agents' reception times (microseconds) and the operators' listings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["utc_iso"]


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
