"""The change records this process committed last, kept decoded for the change-log consumers.

The history recorder (and the subscription dispatcher, when there are
subscriptions) read every record right after it is written; decoding its
before and after documents back from the log was a fifth of the broker's
CPU under a stream of updates. The writer already holds both documents as
Python objects, so it hands them over here once its transaction commits.

The log stays the truth: `after()` answers only with an unbroken run of
seqs starting right after the consumer's cursor, and None otherwise (a
record written by another process, one evicted, a restart), so the caller
then reads the log as before. Records are shared by every consumer and with
the store: nobody may change them.

`listeners` are called with each committed batch, in commit order, right after it
is held here (on the thread that committed it): the rendered-entity cache of
broker.api.rendered drops what a write changed through this hook.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import pairwise

from broker.store.base import ChangeRecord

CAPACITY = 4096
"""Records kept: a few batches of the recorder (1,000 a step), so a lagging consumer falls back to the log."""


class RecentChanges:
    """Committed change records by seq, newest last, at most `capacity`."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        # an OrderedDict drops its oldest in O(1); a dict listed (or walked past) every key it held,
        # ~70 us per write once full (issue 16)
        self._records: OrderedDict[int, ChangeRecord] = OrderedDict()
        self._lock = threading.Lock()  # the writer thread adds, consumers' tasks read
        # whether the held seqs increase front to back: a batch added after a newer one (PostgreSQL tasks
        # resuming after their commits in another order) clears it until forget() finds them ordered again
        self._ordered = True
        self.listeners: list[Callable[[Sequence[ChangeRecord]], None]] = []

    def add(self, records: Sequence[ChangeRecord]) -> None:
        """Remember records just committed (in seq order), then tell the listeners."""
        if not records:
            return
        with self._lock:
            for record in records:
                if self._ordered and self._records and record.seq <= next(reversed(self._records)):
                    self._ordered = False
                self._records[record.seq] = record
            for _ in range(len(self._records) - self.capacity):
                self._records.popitem(last=False)
        for listener in self.listeners:
            listener(records)

    def after(self, seq: int, limit: int) -> list[ChangeRecord] | None:
        """Records seq+1, seq+2, ... (at most `limit`) when held without a gap up to the newest or to `limit`; else None."""
        with self._lock:
            out: list[ChangeRecord] = []
            nxt = seq + 1
            while len(out) < limit and (record := self._records.get(nxt)) is not None:
                out.append(record)
                nxt += 1
            if not out:
                return None
            newest = next(reversed(self._records))
        # stopping short of the newest held record means a gap: something only the log has
        return out if len(out) == limit or out[-1].seq == newest else None

    def forget(self, upto_seq: int) -> None:
        """Drop records with seq <= upto_seq (the log was trimmed past them)."""
        # held in seq order (the usual case), the ones to drop are a run at the front: popped one by one,
        # O(dropped) instead of listing every held key on each trim (issue 16)
        with self._lock:
            records = self._records
            if self._ordered:
                while records and next(iter(records)) <= upto_seq:
                    records.popitem(last=False)
                return
            for seq in [s for s in records if s <= upto_seq]:
                del records[seq]
            self._ordered = all(a < b for a, b in pairwise(records))

    def clear(self) -> None:
        """Forget everything (the store was closed)."""
        with self._lock:
            self._records.clear()
            self._ordered = True
