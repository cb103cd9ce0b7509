"""TimeInstant / reception times to the RFC 3339 UTC observedAt: a canonical text is kept, any other rewritten."""

from __future__ import annotations

import pytest

from agents.mapping.timestamps import to_utc


@pytest.mark.parametrize("text", ["2026-11-26T07:05:00Z", "2026-11-26T07:05:00.123Z", "2026-11-26T07:05:00.120Z",
                                  "2026-11-26T07:05:00.123456Z", "2026-11-26T07:05:00.000123Z"])
def test_canonical_text_is_kept(text: str) -> None:
    assert to_utc(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-26T07:05:00.000Z", "2026-11-26T07:05:00Z"),
    ("2026-11-26T07:05:00.000000Z", "2026-11-26T07:05:00Z"),
    ("2026-11-26T07:05:00.120000Z", "2026-11-26T07:05:00.120Z"),
    ("2026-11-26T07:05:00.1Z", "2026-11-26T07:05:00.100Z"),
    ("2026-11-26t07:05:00z", "2026-11-26T07:05:00Z"),
    (" 2026-11-26T07:05:00Z ", "2026-11-26T07:05:00Z"),
    ("2026-11-26T08:05:00.120000+01:00", "2026-11-26T07:05:00.120Z"),
])
def test_other_text_is_rewritten(text: str, expected: str) -> None:
    assert to_utc(text) == expected


@pytest.mark.parametrize("text", ["2026-02-30T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T23:59:60Z",
                                  "\u0662\u0660\u0662\u0666-11-26T07:05:00Z"])
def test_no_instant_is_rejected_even_in_canonical_shape(text: str) -> None:
    with pytest.raises(ValueError):
        to_utc(text)
