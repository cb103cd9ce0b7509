"""Benchmark of a counter increment: the agents' own metrics (agents.metrics) against prometheus_client.

    python -m bench.metrics_bench [--n 2000000] [--threads 1,2,4]

The agents count a few series per message on their hot paths (intake, ingest,
delivery), from the event loop and from worker threads. This measures one
`inc()` on a labelled series whose child is kept (what the hot paths do),
one `labels(...).inc()` (a child looked up each time), and the cached-child
increment from several threads at once (prometheus_client takes a lock per
increment; agents.metrics writes a per-thread cell). Figures are CPU
nanoseconds of this process per increment (time.process_time), best of
--repeats, so a busy machine's waiting does not count.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from agents.metrics import Metrics


def _cpu_ns_per_op(work: Callable[[int], None], n: int, threads: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
        started = time.process_time()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, (time.process_time() - started) / n * 1e9)
    return best


def main() -> None:
    """Print one table row per case: CPU ns per increment, hand-written and prometheus_client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000, help="increments per case")
    parser.add_argument("--threads", default="1,2,4", help="thread counts for the cached-child case")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ours = Metrics().counter("bench_total", "bench", ["transport", "protocol"])
    registry = CollectorRegistry()
    theirs = PromCounter("bench_total", "bench", ["transport", "protocol"], registry=registry)
    ours_child = ours.labels(transport="mqtt", protocol="json")
    theirs_child = theirs.labels(transport="mqtt", protocol="json")

    def loop(inc: Callable[[], None]) -> Callable[[int], None]:
        def run(k: int) -> None:
            for _ in range(k):
                inc()
        return run

    def ours_lookup() -> None:
        ours.labels(transport="mqtt", protocol="json").inc()

    def theirs_lookup() -> None:
        theirs.labels(transport="mqtt", protocol="json").inc()

    def empty() -> None:
        pass

    cases: list[tuple[str, Callable[[], None], Callable[[], None], int]] = [
        (f"child.inc(), {t} thread{'s' if t > 1 else ''}", ours_child.inc, theirs_child.inc, t)
        for t in (int(x) for x in args.threads.split(","))
    ]
    cases.append(("labels(...).inc(), 1 thread", ours_lookup, theirs_lookup, 1))
    base = _cpu_ns_per_op(loop(empty), args.n, 1, args.repeats)
    print(f"CPU ns per increment (loop overhead {base:.0f} ns subtracted), n={args.n:,}, best of {args.repeats}")
    print(f"{'case':32} {'agents.metrics':>15} {'prometheus_client':>18} {'ratio':>6}")
    for name, mine, library, threads in cases:
        a = _cpu_ns_per_op(loop(mine), args.n, threads, args.repeats) - base
        b = _cpu_ns_per_op(loop(library), args.n, threads, args.repeats) - base
        print(f"{name:32} {a:15.0f} {b:18.0f} {b / a:6.1f}")
    labels = {"transport": "mqtt", "protocol": "json"}
    assert ours_child.get() > 0 and (registry.get_sample_value("bench_total", labels) or 0) > 0  # both counted


if __name__ == "__main__":
    main()
