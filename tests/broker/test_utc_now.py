"""`utc_now` writes the text `models.times.utc_iso` writes, built faster (issue 16, patch17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broker.service.patch import stamp_ms, utc_now
from models.times import utc_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # 1970 to the end of 9999
def test_stamp_ms_is_isoformat_in_milliseconds(ms: int) -> None:
    assert stamp_ms(ms) == utc_iso(EPOCH + timedelta(milliseconds=ms))


def test_stamps_of_one_second_and_the_next() -> None:
    # the second's prefix is kept between calls: a new second must not reuse it
    base = 1_764_748_800_000  # 2025-12-03T08:00:00Z
    assert stamp_ms(base + 999) == "2025-12-03T08:00:00.999Z"
    assert stamp_ms(base + 1000) == "2025-12-03T08:00:01.000Z"
    assert stamp_ms(base + 5) == "2025-12-03T08:00:00.005Z"


def test_utc_now_is_the_current_time() -> None:
    before = utc_iso()
    now = utc_now()
    after = utc_iso()
    assert len(now) == len(before) == 24 and now.endswith("Z")
    assert before <= now <= after  # one format, so text order is time order
