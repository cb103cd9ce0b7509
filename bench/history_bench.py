"""What read-your-writes on the temporal API costs, and what recording history synchronously would cost instead.

    python -m bench.history_bench [--entities 20000] [--stores sqlite,postgres]

History is recorded from the store's change log by a background recorder;
every temporal operation first applies what the log holds (the catch-up),
so a client reads its own writes. This prints, per store, one broker in a
subprocess sharing the machine's cores with this client:

- ingest: batch upserts of N AirQualityObserved entities (1,000 per request, 13 attributes each),
  the writer never waiting for history (as the broker works), entities/s;
- ... then the first temporal read, which records the backlog the ingest left (ms);
- ingest with history recorded before each batch returns: every batch followed by a temporal read
  that catches up (what a synchronous recorder would add to every write), entities/s;
- temporal read, lastN=1 of one entity, history current: p50 / p99 ms;
- the same read right after a PATCH of that entity (the read records one change first): p50 / p99 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.broker_bench import LINK, _pct, _start_broker, air_quality


def run_store(store: str, n: int) -> dict[str, str]:
    """Measure on a fresh broker on `store`; returns the table row."""
    data = Path(tempfile.mkdtemp(prefix=f"bench-history-{store}-"))
    proc, base = _start_broker(store, data)
    row: dict[str, str] = {"store": store}
    try:
        with httpx.Client(base_url=base, headers={"Link": LINK}, timeout=300) as client:
            json = {"Content-Type": "application/json"}

            def ingest(offset: int, wait: bool) -> float:
                bodies = [orjson.dumps([air_quality(i) for i in range(s, min(offset + n, s + 1000))])
                          for s in range(offset, offset + n, 1000)]
                probe = f"/temporal/entities/urn:ngsi-ld:AirQualityObserved:bench-{offset:06d}"
                start = time.perf_counter()
                for body in bodies:
                    r = client.post("/entityOperations/upsert", content=body, headers=json)
                    assert r.status_code in (201, 204), r.text[:300]
                    if wait:
                        assert client.get(probe, params={"lastN": 1}).status_code == 200
                return n / (time.perf_counter() - start)

            row["ingest ent/s"] = f"{ingest(0, False):,.0f}"
            t0 = time.perf_counter()
            assert client.get("/temporal/entities/urn:ngsi-ld:AirQualityObserved:bench-000000", params={"lastN": 1}).status_code == 200
            row["then 1st read ms"] = f"{(time.perf_counter() - t0) * 1000:,.0f}"
            row["ingest, sync history ent/s"] = f"{ingest(n, True):,.0f}"

            rnd = random.Random(2)
            ids = [f"urn:ngsi-ld:AirQualityObserved:bench-{i:06d}" for i in range(2 * n)]
            quiet, fresh = [], []
            for k in range(500):
                eid = rnd.choice(ids)
                t0 = time.perf_counter()
                assert client.get(f"/temporal/entities/{eid}", params={"lastN": 1}).status_code == 200
                quiet.append(time.perf_counter() - t0)
                body = {"value": k, "observedAt": f"2026-12-01T00:{k // 60 % 60:02d}:{k % 60:02d}Z"}
                assert client.patch(f"/entities/{eid}/attrs/no2", json=body).status_code == 204
                t0 = time.perf_counter()
                r = client.get(f"/temporal/entities/{eid}", params={"lastN": 1, "attrs": "no2"})
                fresh.append(time.perf_counter() - t0)
                assert r.json()["no2"][-1]["value"] == k  # the write just made is there
            row["read p50/p99 ms"] = f"{_pct(quiet, 0.5):.2f} / {_pct(quiet, 0.99):.2f}"
            row["read after write p50/p99 ms"] = f"{_pct(fresh, 0.5):.2f} / {_pct(fresh, 0.99):.2f}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args(argv)
    rows = [run_store(s, args.entities) for s in args.stores.split(",")]
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]
    print(f"temporal read-your-writes, {args.entities:,} AirQualityObserved entities per ingest, "
          f"{os.cpu_count()} cores shared with the client")
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r[c].rjust(w) for c, w in zip(cols, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
