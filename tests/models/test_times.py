"""models.times: the one UTC formatter, the current instant and the DateTime members read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from models.errors import BadRequestData
from models.times import now_utc, parse_utc, utc_iso


def test_utc_iso_writes_milliseconds_in_utc_from_any_offset() -> None:
    moment = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert utc_iso(moment) == "2026-11-26T07:00:00.123Z"


def test_now_utc_is_aware_and_utc() -> None:
    assert now_utc().utcoffset() == timedelta(0)


def test_parse_utc_reads_offsets_and_takes_naive_as_utc() -> None:
    assert parse_utc("2026-11-26T08:00:00+01:00", "expiresAt") == datetime(2026, 11, 26, 7, tzinfo=UTC)
    assert parse_utc("2026-11-26T07:00:00Z", "expiresAt") == datetime(2026, 11, 26, 7, tzinfo=UTC)
    assert parse_utc("2026-11-26T07:00:00", "expiresAt").tzinfo is UTC


@pytest.mark.parametrize("value", ["tomorrow", 1764140400, None, "2026-13-01T00:00:00Z"])
def test_parse_utc_refuses_what_is_not_a_datetime_string_naming_the_member(value: object) -> None:
    with pytest.raises(BadRequestData, match="timeAt"):
        parse_utc(value, "timeAt")
