"""Time in the indicators: local days and periods of Europe/Paris, hours in UTC, hourly values from samples.

Every indicator starts from hourly values: the arithmetic mean of an hour's
samples (concentrations, temperatures) or their energetic mean (sound levels),
keyed by the hour's start in UTC. Local days and periods are turned into UTC
intervals with the tz database, so a day is 23 hours on the last Sunday of
March and 25 on the last Sunday of October, and a night that spans a change
lasts 7 or 9 hours.

Coverage rule (the one behind "indisponible"): an hour is valid when it holds
at least one sample; a statistic over a span (a day, a period, an 8-hour
window) is computed only when at least 75 % of the span's hours are valid,
as the aggregation criteria of Directive 2008/50/EC (annex VII) ask of daily
values (18 of 24 hours). For a span that is still under way, the hours
elapsed (complete hours before `now`) are the span, and the result is
marked provisional.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
HOUR = timedelta(hours=1)
MIN_COVERAGE = 0.75

Samples = Iterable[tuple[datetime, float]]
Hourly = Mapping[datetime, float]


def parse_time(value: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


def iso(moment: datetime) -> str:
    """UTC, second precision, with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_at(day: date, hour: int) -> datetime:
    """`hour` o'clock local time on `day` (hour 24 = midnight ending the day), in UTC."""
    extra, hour = divmod(hour, 24)
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=PARIS) + timedelta(days=extra)
    # Adding days to an aware datetime keeps the wall clock; re-attach the zone to get that day's offset.
    moment = moment.replace(tzinfo=PARIS)
    return moment.astimezone(UTC)


def local_day(moment: datetime) -> date:
    """The local (Europe/Paris) calendar day of an instant."""
    return moment.astimezone(PARIS).date()


def span(day: date, start_hour: int, end_hour: int) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local period of `day`; an end at or before the start falls on the next day."""
    end = end_hour if end_hour > start_hour else end_hour + 24
    return local_at(day, start_hour), local_at(day, end)


def day_span(day: date) -> tuple[datetime, datetime]:
    """The local calendar day [00:00, 24:00) in UTC (23, 24 or 25 hours)."""
    return span(day, 0, 24)


def hours(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hour starts in [start, end) (both on whole hours, as Europe/Paris offsets are)."""
    out, t = [], start
    while t < end:
        out.append(t)
        t += HOUR
    return out


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour holding `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _group(samples: Samples) -> dict[datetime, list[float]]:
    groups: dict[datetime, list[float]] = {}
    for moment, value in samples:
        if value is None or not math.isfinite(value):
            continue
        groups.setdefault(hour_of(moment), []).append(float(value))
    return groups


def hourly_means(samples: Samples) -> dict[datetime, float]:
    """Arithmetic mean of each hour's samples."""
    return {h: sum(v) / len(v) for h, v in sorted(_group(samples).items())}


def energetic_mean(levels: Iterable[float]) -> float:
    """10·log10 of the mean of 10^(L/10): the level of the average acoustic energy."""
    values = list(levels)
    if not values:
        raise ValueError("no level to average")
    return 10 * math.log10(sum(10 ** (level / 10) for level in values) / len(values))


def hourly_energetic(samples: Samples) -> dict[datetime, float]:
    """Energetic mean of each hour's sound levels (samples taken as evenly spaced in the hour)."""
    return {h: energetic_mean(v) for h, v in sorted(_group(samples).items())}


def assessed(start: datetime, end: datetime, now: datetime | None) -> tuple[list[datetime], bool]:
    """The hours of [start, end) that count for coverage, and whether the span is still under way."""
    if now is not None and now < end:
        return hours(start, min(end, hour_of(now))), True
    return hours(start, end), False


def covered(values: Hourly, span_hours: list[datetime]) -> list[float] | None:
    """The span's hourly values when they cover at least 75 % of it, else None."""
    found = [values[h] for h in span_hours if h in values]
    if not span_hours or len(found) < MIN_COVERAGE * len(span_hours):
        return None
    return found


def coverage(values: Hourly, span_hours: list[datetime]) -> float:
    """Fraction of the span's hours that hold a value (0 for an empty span)."""
    return sum(1 for h in span_hours if h in values) / len(span_hours) if span_hours else 0.0
