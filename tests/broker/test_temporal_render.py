"""broker.temporal.render.stamp (the bounds of aggregation periods): the text datetime and strftime give."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.temporal.model import from_us
from broker.temporal.render import stamp

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
