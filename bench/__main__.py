"""Run every benchmark in turn (`make bench`); each prints its own table."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.store_bench", "bench.broker_bench", "bench.temporal_bench", "bench.history_bench", "bench.notify_bench",
    "bench.ql_notify_bench", "bench.storage_bench", "bench.history_layout_bench",
    "bench.ingest_bench", "bench.outbox_bench", "bench.codec_bench", "bench.ops_bench", "bench.metrics_bench",
    "bench.api_bench", "bench.patch_cpu_bench",
)


def main() -> int:
    """Run each benchmark module in its own process, stopping at the first failure."""
    for module in BENCHMARKS:
        print(f"\n== {module} ==", flush=True)
        rc = subprocess.call([sys.executable, "-m", module])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
