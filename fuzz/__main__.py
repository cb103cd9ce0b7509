"""`python -m fuzz [--scale S] [--only NAME...] [--seed N]`: every target for its time budget; exit 1 on any failure."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import random
import sys

from fuzz.runner import Result, fuzz, limit_memory, report
from fuzz.targets import IN_PROCESS

BUDGET = {"q-language": 12.0, "geo-query": 12.0, "temporal-params": 8.0, "payload-codecs": 10.0,
          "api-bodies": 25.0, "openapi": 30.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--scale", type=float, default=float(os.environ.get("METROPOLE_FUZZ_SCALE", "1")),
                        help="multiply every target's time budget (default 1: about 100 s in all)")
    parser.add_argument("--only", nargs="*", default=None, help="run these targets only")
    parser.add_argument("--max-memory-mb", type=int, default=int(os.environ.get("METROPOLE_FUZZ_MAX_MEMORY_MB", "4096")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("METROPOLE_FUZZ_SEED") or random.randrange(10**9)),
                        help="first seed of the inputs (default: a random one, printed; the same seed tries the same "
                             "inputs again)")
    args = parser.parse_args(argv)
    print(f"fuzz: seed {args.seed} (python -m fuzz --seed {args.seed} tries the same inputs)", flush=True)
    limit_memory(args.max_memory_mb)
    total = sum(BUDGET.values()) * args.scale
    faulthandler.dump_traceback_later(total + 120, exit=True)  # one input that never returns ends the run, loudly
    logging.getLogger("broker").setLevel(logging.CRITICAL)  # the broker logs each 500 it answers; we count them
    wanted = set(args.only) if args.only else set(BUDGET)
    results: list[Result] = []
    for target in IN_PROCESS:
        if target.name in wanted:
            results.append(fuzz(target.name, target.strategy, target.run, BUDGET[target.name] * args.scale,
                                first_seed=args.seed))
            print(f"fuzz: {target.name}: {results[-1].tried} inputs, {len(results[-1].failures)} failures", flush=True)
    if wanted & {"api-bodies", "openapi"}:
        from hypothesis import strategies as st

        from fuzz.api import Broker, body_target, endpoint, openapi_operations, openapi_target, operation_strategy

        with Broker() as client:
            if "api-bodies" in wanted:
                results.append(fuzz("api-bodies", st.tuples(endpoint), lambda op: body_target(client, op),
                                    BUDGET["api-bodies"] * args.scale, first_seed=args.seed))
                print(f"fuzz: api-bodies: {results[-1].tried} inputs, {len(results[-1].failures)} failures", flush=True)
            if "openapi" in wanted:
                ops = operation_strategy(openapi_operations())
                results.append(fuzz("openapi", st.tuples(ops), lambda op: openapi_target(client, op),
                                    BUDGET["openapi"] * args.scale, first_seed=args.seed))
                print(f"fuzz: openapi: {results[-1].tried} inputs, {len(results[-1].failures)} failures", flush=True)
    faulthandler.cancel_dump_traceback_later()
    print(report(results))
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
