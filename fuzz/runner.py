"""Run fuzz targets, each for a bounded time, the process for a bounded memory; print the report."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from fuzz.targets import Failure


@dataclass
class Result:
    """What one target's run found."""

    name: str
    tried: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def limit_memory(megabytes: int) -> None:
    """Cap the address space of this process: a runaway input ends in MemoryError, not a swapping machine."""
    cap = megabytes << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def fuzz(name: str, strategy: st.SearchStrategy[tuple[Any, ...]], run: Callable[..., None], seconds: float,
         max_failures: int = 10, first_seed: int = 0) -> Result:
    """Feed `run` inputs drawn from `strategy` for `seconds`; failures are recorded (not shrunk) and the run goes on.

    Round i of 250 inputs draws them from seed first_seed + i: the same seed gives the same inputs in the same
    order, so a failure is found again with --seed (a slower machine tries a prefix of the same sequence)."""
    result = Result(name)
    started = time.monotonic()
    deadline = started + seconds
    seen: set[str] = set()

    def one(args: tuple[Any, ...]) -> None:
        if time.monotonic() > deadline or len(result.failures) >= max_failures:
            return
        result.tried += 1
        try:
            run(*args)
        except Failure as failure:
            key = str(failure).split(":", 2)[-1][:120]
            if key not in seen:
                seen.add(key)
                result.failures.append(str(failure))
        except MemoryError:
            result.failures.append(f"MemoryError on {str(args)[:300]}")

    rounds = 0
    while time.monotonic() < deadline and len(result.failures) < max_failures:
        round_ = seed(first_seed + rounds)(settings(max_examples=250, deadline=None, database=None,
                                                    phases=[Phase.generate], suppress_health_check=list(HealthCheck))(
            given(strategy)(one)))
        round_()
        rounds += 1
    result.seconds = time.monotonic() - started
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def report(results: Sequence[Result]) -> str:
    """The fuzzing report: inputs tried per target, failures found (with the first few)."""
    lines = [f"{'target':<18} {'inputs':>8} {'failures':>9} {'seconds':>8} {'peak RSS MB':>12}"]
    for r in results:
        lines.append(f"{r.name:<18} {r.tried:>8} {len(r.failures):>9} {r.seconds:>8.1f} {r.peak_rss_mb:>12.0f}")
    lines.append(f"{'total':<18} {sum(r.tried for r in results):>8} {sum(len(r.failures) for r in results):>9}")
    for r in results:
        for failure in r.failures[:5]:
            lines.append(f"FAIL {r.name}: {failure}")
    return "\n".join(lines)
