"""broker.temporal.render.stamp (the bounds of aggregation periods): the text datetime and strftime give."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.temporal.model import from_us
from broker.temporal.query import TemporalQuery
from broker.temporal.render import period, stamp
from broker.temporal.storage import Bucket, TimeRange

# whole seconds from year 1 to 9999 (before 1970 and from 10000 on: the datetime path), and a month of hours
_SECONDS = st.integers(-62_135_596_800, 253_402_300_799) | st.integers(1_767_225_600, 1_767_225_600 + 31 * 86_400)


@settings(max_examples=1000, deadline=None)
@given(seconds=_SECONDS)
def test_stamp_of_whole_seconds_is_strftime(seconds: int) -> None:
    """Its day's cached text and the time of day (query18), as strftime prints the moment."""
    expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stamp(seconds * 1_000_000) == stamp(seconds * 1_000_000) == expected  # the second from the cache


@settings(max_examples=200, deadline=None)
@given(seconds=_SECONDS, micros=st.integers(1, 999_999))
def test_stamp_with_a_fraction_is_from_us(seconds: int, micros: int) -> None:
    us = seconds * 1_000_000 + micros
    assert stamp(us) == from_us(us)


@settings(max_examples=200, deadline=None)
@given(origin_s=st.integers(-62_000_000_000, 250_000_000_000), period_s=st.integers(1, 40 * 86_400), numbers=st.lists(st.integers(0, 800), max_size=40),
       end_s=st.none() | st.integers(0, 800 * 40 * 86_400))
def test_period_bounds_with_a_memo_are_the_same(origin_s: int, period_s: int, numbers: list[int], end_s: int | None) -> None:
    """render.period with one answer's memo of bounds (query18) gives what it gives without, bucket by bucket."""
    origin, period_us = origin_s * 1_000_000, period_s * 1_000_000
    tq = TemporalQuery(period_us=period_us, mode="aggregatedValues", aggr_methods=["avg"])
    rng = TimeRange("observed_us", origin, None if end_s is None else origin + end_s * 1_000_000)
    memo: dict[int, str] = {}
    for n in sorted(numbers):
        b = Bucket("urn:e", "https://x/a", n, 1, 0, 1, 1.0, 1.0, 1.0, 1.0)
        assert period(b, origin, tq, rng, memo) == period(b, origin, tq, rng)
