"""model._time of whole-second texts (`2026-03-01T00:00:05Z`, NGSI-v2's TimeInstant) read field by field
(model._whole_second_us, issue 16, notifyfast21) answers what it answered by parsing and formatting.

The reference is _time before that path: datetime.fromisoformat (model._parse_us), then the text compared
with its millisecond and whole-second renderings. Every lookalike (other separators, widths, non-ASCII
digits, out-of-range fields, the epoch and before) must get the reference's answer.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.temporal import model
from tests.broker.test_history_rows_compiled import _time_reference

LOOKALIKES = [
    "2026-03-01T00:00:05Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "0999-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-29T12:00:00Z",
    "2026-02-29T12:00:00Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
    "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
    "２026-01-01T00:00:00Z", "2026-01-01T00:00:0٣Z", "+026-01-01T00:00:00Z", " 026-01-01T00:00:00Z",
    "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01 00:00:00Z", "2026_01-01T00:00:00Z",
    "2026-01-01T00-00:00Z", "2026-01-01T0 :00:00Z", "2026-1-01T00:00:00Z ", "2026-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00.000Z", "2026-01-01T00:00Z", "20260101T000000Z....",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_whole_second_lookalikes_are_the_time_reference(text: str) -> None:
    model._TIMES.clear()
    assert model._time(text) == _time_reference(text)


def test_the_timeinstant_form_takes_the_field_path() -> None:
    assert model._whole_second_us("2026-03-01T00:00:05Z") == model._parse_us("2026-03-01T00:00:05Z")
    assert model._whole_second_us("1970-01-01T00:00:00Z") is None  # the epoch: _time answers None, as before
    assert model._whole_second_us("2026-03-01T00:00:05.000Z") is None


@settings(max_examples=400, deadline=None)
@given(st.integers(-62_135_596_800, 253_402_300_799), st.sampled_from(["", "T", "-", ":", "Z", "0", "9", " ", "٣"]),
       st.integers(0, 19))
def test_any_whole_second_and_its_variants(seconds: int, char: str, where: int) -> None:
    text = model.from_us(seconds * 1_000_000)[:19] + "Z"
    for candidate in (text, text[:where] + char + text[where + 1:]):
        model._TIMES.clear()
        assert model._time(candidate) == _time_reference(candidate), candidate
