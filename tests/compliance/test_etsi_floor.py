"""The conformance floor: comparison per store and area, raising it only upwards, store differences."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compliance import etsi_floor
from compliance.conformance import check_floor, overall, report, store_differences
from compliance.etsi_results import AREA_ORDER, FAIL, PASS, EtsiRun, EtsiTest


def _run(label: str, results: dict[str, tuple[str, str]]) -> EtsiRun:
    """A run from {test id: (area, status)}."""
    return EtsiRun([EtsiTest(i, f"{i} name", status, "" if status == PASS else "500 != 200", area, "", (), "", 0.1)
                    for i, (area, status) in results.items()], label=label)


SQLITE = _run("sqlite", {"a1": ("Batch", PASS), "a2": ("Batch", PASS), "b1": ("Subscription", PASS),
                         "b2": ("Subscription", FAIL)})
POSTGRES = _run("postgresql", {"a1": ("Batch", PASS), "a2": ("Batch", FAIL), "b1": ("Subscription", PASS),
                               "b2": ("Subscription", PASS)})


def test_counts_per_area_and_total() -> None:
    assert etsi_floor.counts_of(SQLITE) == {"total": 3, "Batch": 2, "Subscription": 1}


def test_unstable_tests_are_not_counted_and_every_area_of_the_run_is() -> None:
    counts = etsi_floor.counts_of(SQLITE, frozenset({"b1 name"}))
    assert counts == {"total": 2, "Batch": 2, "Subscription": 0}


def test_unstable_tests_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floor.json"
    etsi_floor.write(path, {"sqlite": {"total": 2, "Batch": 2, "Subscription": 0}}, {"unstable": {"b1 name": "why"}})
    assert check_floor({"sqlite": SQLITE}, path, update=True, about={}) == 0
    assert "unstable, not counted: b1 name (sqlite PASS)" in capsys.readouterr().out
    floor, meta = etsi_floor.load(path)
    assert floor["sqlite"]["Subscription"] == 0 and meta["unstable"] == {"b1 name": "why"}


def test_a_regression_in_one_area_fails_even_when_the_total_holds() -> None:
    floor = {"sqlite": {"total": 3, "Batch": 1, "Subscription": 2}}
    short = etsi_floor.compare(floor, {"sqlite": etsi_floor.counts_of(SQLITE)})
    assert [(s.store, s.area, s.passed, s.floor) for s in short] == [("sqlite", "Subscription", 1, 2)]
    assert str(short[0]) == "sqlite: 1 passed in Subscription, the floor is 2 (-1)"


def test_at_the_floor_passes_and_a_missing_area_or_store_counts_as_zero() -> None:
    measured = {"sqlite": etsi_floor.counts_of(SQLITE)}
    assert etsi_floor.compare({"sqlite": {"total": 3, "Batch": 2, "Subscription": 1}}, measured) == []
    short = etsi_floor.compare({"sqlite": {"Discovery": 1}, "postgresql": {"total": 1}}, measured)
    assert {(s.store, s.area, s.passed) for s in short} == {("sqlite", "Discovery", 0), ("postgresql", "total", 0)}


def test_raised_lists_what_changes() -> None:
    lines = etsi_floor.raised({"sqlite": {"total": 2, "Batch": 2}}, {"sqlite": {"total": 3, "Batch": 2,
                                                                              "Subscription": 1}})
    assert lines == ["sqlite total: 2 -> 3", "sqlite Subscription: - -> 1"]


def test_update_writes_when_nothing_went_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floor.json"
    etsi_floor.write(path, {"sqlite": {"total": 2, "Subscription": 1, "Batch": 1}}, {"about": "x"})
    assert check_floor({"sqlite": SQLITE}, path, update=True, about={"measured_at": "abc"}) == 0
    floor, meta = etsi_floor.load(path)
    assert floor == {"sqlite": {"total": 3, "Batch": 2, "Subscription": 1}}
    assert meta == {"about": "x", "measured_at": "abc"}
    assert list(json.loads(path.read_text())["stores"]["sqlite"]) == ["total", "Batch", "Subscription"]
    assert "sqlite total: 2 -> 3" in capsys.readouterr().out


def test_update_is_refused_when_a_count_went_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floor.json"
    etsi_floor.write(path, {"sqlite": {"total": 3, "Batch": 1, "Subscription": 2}}, {})
    before = path.read_text()
    assert check_floor({"sqlite": SQLITE}, path, update=True, about={}) == 1
    assert path.read_text() == before
    out = capsys.readouterr().out
    assert "BELOW THE FLOOR" in out and "floor not updated" in out


def test_check_without_update_leaves_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floor.json"
    etsi_floor.write(path, {"sqlite": {"total": 1}}, {})
    before = path.read_text()
    assert check_floor({"sqlite": SQLITE}, path, update=False, about={}) == 0
    assert path.read_text() == before and "UPDATE_FLOOR=1" in capsys.readouterr().out


def test_repeated_ids_are_told_apart_by_their_names() -> None:
    # the suite has six "019_01_06 ..." tests in one file: each counts
    a = EtsiRun([EtsiTest("019_01_06", f"019_01_06 Query{n}", PASS, "", "Consumption", "f.robot", (), "", 0)
                 for n in range(6)])
    b = EtsiRun([EtsiTest("019_01_06", f"019_01_06 Query{n}", PASS if n else FAIL, "", "Consumption", "f.robot",
                          (), "", 0) for n in range(6)])
    assert overall({"sqlite": a, "postgresql": b}) == (5, 1)
    assert store_differences({"sqlite": a, "postgresql": b}) == [("019_01_06 Query0", "sqlite", "postgresql")]


def test_store_differences_and_overall() -> None:
    runs = {"sqlite": SQLITE, "postgresql": POSTGRES}
    assert store_differences(runs) == [("a2 name", "sqlite", "postgresql"), ("b2 name", "postgresql", "sqlite")]
    assert overall(runs) == (2, 2)  # a test passes overall only when it passes on both stores
    text = report(runs)
    assert text.rstrip().splitlines()[-1] == "ETSI: 2 passed, 2 failed"
    assert "sqlite:      ETSI: 3 passed, 1 failed" in text and "postgresql:  ETSI: 3 passed, 1 failed" in text
    assert "2 test(s) pass on one store and fail on the other" in text


def test_the_repository_floor_covers_both_stores_and_every_area() -> None:
    floor, meta = etsi_floor.load()
    assert set(floor) == {"sqlite", "postgresql"} and meta["measured_at"]
    assert all(re.match(r"^\w+ \S", name) and why for name, why in meta.get("unstable", {}).items())
    for store, counts in floor.items():
        areas = {k: v for k, v in counts.items() if k != etsi_floor.TOTAL}
        assert set(areas) == set(AREA_ORDER) - {"Other"}, store
        assert counts[etsi_floor.TOTAL] == sum(areas.values()), store
