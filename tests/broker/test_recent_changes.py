"""RecentChanges: the decoded records a store hands its change-log consumers, never in place of a gap."""

from __future__ import annotations

from broker.store.base import ChangeRecord
from broker.store.recent import RecentChanges


def records(*seqs: int) -> list[ChangeRecord]:
    return [ChangeRecord(s, "", f"urn:ngsi-ld:T:{s}", None, {"id": f"urn:ngsi-ld:T:{s}"}, "2026-11-26T10:00:00Z") for s in seqs]


def test_an_unbroken_run_is_served_up_to_the_limit_or_the_newest() -> None:
    recent = RecentChanges()
    recent.add(records(1, 2, 3, 4))
    assert [r.seq for r in recent.after(0, 10) or []] == [1, 2, 3, 4]
    assert [r.seq for r in recent.after(1, 2) or []] == [2, 3]
    assert recent.after(4, 10) is None  # nothing newer held: the log decides


def test_a_gap_sends_the_consumer_to_the_log() -> None:
    recent = RecentChanges()
    recent.add(records(1, 2, 4, 5))  # 3 was written by another process, or evicted
    assert recent.after(0, 10) is None
    assert [r.seq for r in recent.after(0, 2) or []] == [1, 2]  # the limit ends the page before the gap
    assert [r.seq for r in recent.after(3, 10) or []] == [4, 5]


def test_capacity_evicts_the_oldest_and_forget_follows_trimming() -> None:
    recent = RecentChanges(capacity=3)
    recent.add(records(1, 2, 3, 4, 5))
    assert recent.after(0, 10) is None
    assert [r.seq for r in recent.after(2, 10) or []] == [3, 4, 5]
    recent.forget(4)
    assert recent.after(2, 10) is None
    assert [r.seq for r in recent.after(4, 10) or []] == [5]
