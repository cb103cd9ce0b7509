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


class CountingKeys(RecentChanges):
    """A RecentChanges counting the held keys its walks look at (`walks`)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.walks = 0
        outer = self

        class Walked(type(self._records)):  # type: ignore[misc]
            def __iter__(self):  # type: ignore[no-untyped-def]
                for key in super().__iter__():
                    outer.walks += 1
                    yield key

        self._records = Walked()


def test_forget_drops_the_front_run_without_walking_every_held_record() -> None:
    recent = CountingKeys(capacity=100)
    recent.add(records(*range(1, 51)))
    recent.walks = 0
    recent.forget(3)
    # each pop looks at the front key once (and once more at the first one kept): 4 keys, not all 50
    assert recent.walks <= 4
    assert recent.after(2, 10) is None
    assert [r.seq for r in recent.after(3, 100) or []] == list(range(4, 51))
    recent.forget(0)
    recent.forget(60)
    assert recent.after(3, 100) is None and recent.after(50, 10) is None


def test_forget_after_batches_added_out_of_seq_order_drops_exactly_those_at_or_below() -> None:
    recent = RecentChanges(capacity=100)
    recent.add(records(5, 6))
    recent.add(records(3, 4))  # a commit's task resumed after a later one's (PostgreSQL)
    recent.add(records(7))
    recent.forget(4)
    assert [r.seq for r in recent.after(4, 10) or []] == [5, 6, 7]
    assert recent.after(2, 10) is None
    recent.add(records(8))  # held in order again: the fast path drops the front run
    recent.forget(6)
    assert [r.seq for r in recent.after(6, 10) or []] == [7, 8]
    assert recent.after(4, 10) is None
