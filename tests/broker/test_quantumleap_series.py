"""series.truncate (DATE_TRUNC of a QuantumLeap time), cached per kept prefix, and the bucket starts of the rollup
path: the same answer as datetime's; page_buckets against numbering every row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.quantumleap.params import Params
from broker.quantumleap.series import Buckets, Series, _start, iso, page_buckets, truncate

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


@settings(max_examples=500, deadline=None)
@given(hours=st.integers(0, 2_932_895 * 24 + 23) | st.integers(-10_000, 10_000), minutes=st.sampled_from([0, 0, 0, 7]))
def test_bucket_start_is_datetimes(hours: int, minutes: int) -> None:
    """_start's whole-hour text from its day's cached text (query18) is what datetime prints, at any hour."""
    us = hours * 3_600_000_000 + minutes * 60_000_000
    assert _start(us) == datetime.fromtimestamp(us // 1_000_000, UTC).isoformat(timespec="milliseconds")


def _page_by_rows(all_buckets: list[Buckets], p: Params) -> list[Any]:
    """page_buckets as (entity, starts, values), by numbering every (entity, bucket) row (its general path)."""
    rows = [(b, i) for b in sorted(all_buckets, key=lambda b: b.series.entity_id)
            for i in (range(len(b.starts) - 1, -1, -1) if p.last_n is not None else range(len(b.starts)))]
    kept = rows[p.offset : p.offset + p.window]
    out = []
    for b in all_buckets:
        idx = sorted(i for c, i in kept if c is b)
        if idx:
            out.append((b.series.entity_id, [b.starts[i] for i in idx], {n: [v[i] for i in idx] for n, v in b.values.items()}))
    return out


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), max_size=4), offset=st.integers(0, 3), limit=st.integers(1, 30),
       last_n=st.none() | st.integers(1, 8))
def test_page_buckets_keeps_the_rows_numbering_keeps(sizes: list[int], offset: int, limit: int, last_n: int | None) -> None:
    """page_buckets, with its whole-page shortcut (query18), keeps what numbering every row keeps, as copies."""
    all_buckets = [Buckets(Series(f"e{k}", "T"), [f"s{i}" for i in range(n)], {"a": list(range(n)), "b": [None] * n})
                   for k, n in reversed(list(enumerate(sizes)))]
    p = Params(aggr_method="avg", aggr_period="hour", offset=offset, limit=limit, last_n=last_n)
    got = page_buckets(all_buckets, p)
    assert [(b.series.entity_id, b.starts, b.values) for b in got] == _page_by_rows(all_buckets, p)
    for b in got:
        b.starts.append("x")  # the page's lists are its own
    assert all("x" not in b.starts for b in all_buckets)
