"""Garbage-collector settings of the long-running processes (`metropole run`, `broker`, `agent`; issue 16).

CPython's cycle collector runs a young-generation pass every 700 net container
allocations by default. A broker request allocates a few hundred (parsed bodies,
documents, change records), so under load a pass ran every request or two, and
each older pass walked every object the process had made at start-up (modules,
the app, contexts, models). py-spy under the batch upsert bench put the collector
at about a third of what was left of normalisation (batch16); the in-process PATCH
bench (`bench.patch_cpu_bench`) measured 309-425 against 374-449 CPU µs per
request with these settings, three pairs alternated on a loaded machine.

Reference counting still frees every acyclic object at once: only cyclic garbage
waits longer, a few MB at most. Not applied in the test process, where apps come
and go and frozen cycles would never be collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Net container allocations between young-generation passes (CPython's default: 700)."""


def tune_for_serving() -> None:
    """Freeze what start-up made (never scanned again) and collect the young generation less often."""
    gc.collect()  # what start-up left as garbage goes now, not frozen forever
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
