"""series.truncate (DATE_TRUNC of a QuantumLeap time), cached per kept prefix: the same answer as datetime's."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.quantumleap.series import iso, truncate

_FIELDS = ["year", "month", "day", "hour", "minute", "second"]


@settings(max_examples=500, deadline=None)
@given(us=st.integers(0, 253_402_300_799_999_999) | st.integers(1_767_225_600_000_000, 1_767_225_600_000_000 + 10**13),
       period=st.sampled_from(_FIELDS))
def test_truncate_is_date_trunc(us: int, period: str) -> None:
    moment = datetime.fromtimestamp(us // 1_000_000, UTC)
    keep = _FIELDS.index(period) + 1
    parts = [moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second]
    y, mo, d, h, mi, sec = parts[:keep] + [1, 1, 1, 0, 0, 0][keep:]
    expected = datetime(y, mo, d, h, mi, sec, tzinfo=UTC).isoformat(timespec="milliseconds")
    text = iso(us)
    assert truncate(text, period) == truncate(text, period) == expected  # the second from the cache
    assert truncate(text[:23] + "Z", period) == expected  # not an `iso` text: not through the cache
