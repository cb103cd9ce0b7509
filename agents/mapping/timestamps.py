"""Measure timestamps (`TimeInstant`) to the RFC 3339 UTC `observedAt` NGSI-LD wants."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["to_utc", "now_utc"]


def now_utc() -> str:
    return _format(datetime.now(timezone.utc))


def _format(d: datetime) -> str:
    d = d.astimezone(timezone.utc)
    ms = d.microsecond // 1000
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}Z" if ms else "Z")


def to_utc(value: Any, tz: str | None = None) -> str:
    """ISO 8601 text or epoch (s or ms) to RFC 3339 UTC; a naive time is read in the device's timezone."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return _format(datetime.fromtimestamp(seconds, tz=timezone.utc))
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
            d = d.replace(tzinfo=ZoneInfo(tz) if tz else timezone.utc)
        except (ZoneInfoNotFoundError, ValueError):
            d = d.replace(tzinfo=timezone.utc)
    return _format(d)
