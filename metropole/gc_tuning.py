"""Garbage-collector settings of the long-running processes (`metropole run`, `broker`, `agent`; issue 16).

CPython's cycle collector runs a young-generation pass every 700 net container
allocations by default. A broker request allocates a few hundred (parsed bodies,
documents, change records), so under load a pass ran every request or two, and
each older pass walked every object the process had made at start-up (modules,
the app, contexts, models). py-spy under the batch upsert bench put the collector
at about a third of what was left of normalisation (batch16); the in-process PATCH
bench (`bench.patch_cpu_bench`) measured 309-425 against 374-449 CPU µs per
request with these settings, three pairs alternated on a loaded machine.

The threshold was 50,000 until batch19. A 1,000-entity batch upsert holds more
container objects alive at once (the parsed body, the documents, the before
images), so a young pass ran in nearly every batch and found nothing to free:
under `bench.broker_bench --entities 20000 --upsert-only --repeat 1 --settle`
(SQLite) 37-38 young and 3 middle passes, 1.1-3.4 s of collector wall time
per run. At 400,000 one young pass ran per run (59-498 ms on the loaded machine;
the 50,000 runs' longest passes were 58-271 ms young, 74-413 ms middle),
the broker's peak RSS did not move (378-392 against 380-392 MB), and under the PATCH/GET
bench (`bench.api_bench --load wrk`) neither setting ran a pass while
measured (three passes of 12-15 ms at 50,000 during the load before it).

Reference counting still frees every acyclic object at once: only cyclic garbage
waits longer, a few MB at most. Not applied in the test process, where apps come
and go and frozen cycles would never be collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 400_000
"""Net container allocations between young-generation passes (CPython's default: 700)."""


def tune_for_serving() -> None:
    """Freeze what start-up made (never scanned again) and collect the young generation less often."""
    gc.collect()  # what start-up left as garbage goes now, not frozen forever
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
