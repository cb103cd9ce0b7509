"""The conformance floor: how many ETSI tests the broker must keep passing, per store and per area.

The floor lives in the repository (`compliance/etsi-floor.json`) and CI fails
when a run passes fewer tests than it says. It holds, for each store, the
number of passing tests of every area and in all: per area, so that a fix in
one area cannot hide a regression in another (the total alone would); counts
rather than the list of passing tests, so the file stays small, reviewable
in a diff, and a raise is one glance. It only ever goes up:
`make conformance UPDATE_FLOOR=1` rewrites it from a run, and refuses when
any count of that run is below the floor.

Its `unstable` member names tests (by full name) whose result changes from
run to run on the same code, with the reason: their passes are not counted,
so that CI fails on regressions, not on chance. A test leaves the list when
its cause is mended; the next raise then counts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compliance.etsi_results import PASS, EtsiRun, area_rank

FLOOR_FILE = Path(__file__).resolve().parent / "etsi-floor.json"
TOTAL = "total"

Floor = dict[str, dict[str, int]]  # store -> {"total": n, area: n, ...}


@dataclass(frozen=True)
class Shortfall:
    """One count of a run below its floor."""

    store: str
    area: str  # an area, or "total"
    passed: int
    floor: int

    def __str__(self) -> str:
        what = "in all" if self.area == TOTAL else f"in {self.area}"
        return f"{self.store}: {self.passed} passed {what}, the floor is {self.floor} ({self.passed - self.floor:+d})"


def counts_of(run: EtsiRun, unstable: frozenset[str] = frozenset()) -> dict[str, int]:
    """The passing tests of a run, per area (every area of the run, 0 included) and in all, leaving out
    the `unstable` ones (full test names)."""
    out = {TOTAL: 0, **{area: 0 for area in run.by_area()}}
    for t in run.tests:
        if t.status == PASS and t.name not in unstable:
            out[TOTAL] += 1
            out[t.area] += 1
    return out


def unstable_of(meta: dict[str, Any]) -> frozenset[str]:
    """The names of the tests the floor file lists as unstable."""
    return frozenset(meta.get("unstable", {}))


def load(path: Path = FLOOR_FILE) -> tuple[Floor, dict[str, Any]]:
    """The floor per store, and the file's other members (what was measured, how)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    stores = doc.get("stores", {})
    floor = {store: {k: int(v) for k, v in counts.items()} for store, counts in stores.items()}
    return floor, {k: v for k, v in doc.items() if k != "stores"}


def compare(floor: Floor, measured: dict[str, dict[str, int]]) -> list[Shortfall]:
    """Every count of `measured` (store -> area/total -> passed) below `floor`; a store or
    area of the floor missing from the run counts as zero passed."""
    short = []
    for store, counts in floor.items():
        got = measured.get(store, {})
        for area, n in counts.items():
            if got.get(area, 0) < n:
                short.append(Shortfall(store, area, got.get(area, 0), n))
    return short


def raised(floor: Floor, measured: dict[str, dict[str, int]]) -> list[str]:
    """What a new floor from `measured` would raise, as lines of text ("sqlite Batch 48 -> 50")."""
    lines = []
    for store, counts in measured.items():
        old = floor.get(store, {})
        for area, n in counts.items():
            if n != old.get(area):
                lines.append(f"{store} {area}: {old.get(area, '-')} -> {n}")
    return lines


def write(path: Path, measured: dict[str, dict[str, int]], about: dict[str, Any]) -> None:
    """Write the floor file: `about` members, then the counts per store (total first, areas in order)."""
    stores = {store: {TOTAL: counts[TOTAL], **{a: counts[a] for a in sorted(
        (k for k in counts if k != TOTAL), key=area_rank)}} for store, counts in measured.items()}
    path.write_text(json.dumps({**about, "stores": stores}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
