"""Measure timestamps (`TimeInstant`) to the RFC 3339 UTC `observedAt` NGSI-LD wants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["now_utc", "shifted", "to_utc"]

# What _format writes (a four-digit year; a fraction only when not zero, in milliseconds when that is exact):
# such a text is its own result, and the transports stamp every message so, as do most devices.
_CANONICAL = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!000Z)\d{3}|\.(?!\d{3}000Z)\d{6})?Z", re.ASCII)


def now_utc() -> str:
    return _format(datetime.now(UTC))


def _format(d: datetime) -> str:
    # Microseconds are kept when present: history keeps one instance per
    # observedAt, so two measures a few microseconds apart must stay apart.
    d = d.astimezone(UTC)
    us = d.microsecond
    fraction = "" if not us else f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}"
    return d.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def shifted(timestamp: str, microseconds: int) -> str:
    """An RFC 3339 time `microseconds` later, in the same UTC format.

    The measures of one multi-measure message without TimeInstant share
    their reception time; each later one is stamped a microsecond after the
    previous, so history keeps every one of them, in the order sent.
    """
    d = datetime.fromisoformat(timestamp)
    return _format(d + timedelta(microseconds=microseconds))


def to_utc(value: Any, tz: str | None = None) -> str:
    """ISO 8601 text or epoch (s or ms) to RFC 3339 UTC; a naive time is read in the device's timezone."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value) and _is_date(value[:-1]):
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return _format(datetime.fromtimestamp(seconds, tz=UTC))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp")
    text = value.strip()
    if text.isdigit():
        return to_utc(int(text), tz)
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    if d.tzinfo is None:
        try:
            d = d.replace(tzinfo=ZoneInfo(tz) if tz else UTC)
        except (ZoneInfoNotFoundError, ValueError):
            d = d.replace(tzinfo=UTC)
    return _format(d)


def _is_date(text: str) -> bool:
    """Whether an ISO 8601 date-time names a real instant (not February 30th)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
