"""History rows of batch20 (issue 16): value_row's float texts and one-member bytes made once, the layouts kept
per plan, and rows_of_change's single comparison of one instance before and after, held to the references.

Instances run in sequence so that what one of them leaves in a cache meets the next ones: 0.0 and -0.0 (equal
floats of different texts), 1.0 and 1 (equal keys of different types), unit codes as texts and not, the same
names in other time forms.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.store.base import ChangeRecord
from broker.temporal.model import rows_of_change, rows_of_change_reference, value_row, value_row_reference

NO2 = "https://smartdatamodels.org/dataModel.Environment/no2"
STAMP = "2026-12-06T15:00:00.123Z"


def _fields(row: Any) -> dict[str, Any]:
    return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}


def _same(inst: dict[str, Any]) -> None:
    expected = _fields(value_row_reference("t", "urn:ngsi-ld:X:1", NO2, dict(inst), 1_796_569_200_123_000))
    got = _fields(value_row("t", "urn:ngsi-ld:X:1", NO2, dict(inst), 1_796_569_200_123_000))
    assert got == expected and got["value_json"] == expected["value_json"], inst


def _reading(value: Any, unit: Any = "GQ", observed: str = "2026-11-26T10:05:00Z") -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": observed, "unitCode": unit,
            "createdAt": STAMP, "modifiedAt": STAMP}


@pytest.mark.parametrize("values", [
    [0.0, -0.0, 0.0, -0.0],
    [1.0, 1, True, 1.0, 1],
    [41.5, 41.5, 1e16, 1e-7, 41.5, 123456789.125],
], ids=["zero and minus zero", "equal keys of other types", "float texts"])
def test_values_in_sequence_are_the_reference(values: list[Any]) -> None:
    for value in values:
        _same(_reading(value))


def test_one_kept_member_in_sequence_is_the_reference() -> None:
    for unit in ["CEL", "GQ", "CEL", 5, None, "CEL", "", "é", "GQ"]:
        _same(_reading(20.5, unit))
        _same(_reading(20.5, unit, observed="2026-11-26T10:05:00.000Z"))  # the same names, another layout
        row = value_row("t", "urn:ngsi-ld:X:1", NO2, _reading(20.5, unit), 1)
        if unit == "CEL":
            assert row.packed == b'TVO*cm{"unitCode":"CEL"}'


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**63, 2**63 - 1),
                          st.booleans()),
       unit=st.one_of(st.sampled_from(["GQ", "CEL", "P1"]), st.text(max_size=3), st.integers(-9, 9)))
def test_readings_are_the_reference(value: Any, unit: Any) -> None:
    _same(_reading(value, unit))


def _record(before: dict[str, Any] | None, after: dict[str, Any]) -> ChangeRecord:
    return ChangeRecord(1, "t", "urn:ngsi-ld:X:1", before, after, STAMP)


def _rows(record: ChangeRecord) -> list[dict[str, Any]]:
    got = [_fields(r) for r in rows_of_change(record)[1]]
    assert got == [_fields(r) for r in rows_of_change_reference(record)[1]]
    return got


def test_an_instance_equal_before_and_after_makes_no_row_in_any_container() -> None:
    inst = _reading(20.5)
    for previous, now in [([dict(inst)], [dict(inst)]), (dict(inst), [dict(inst)]), ([dict(inst)], dict(inst)),
                          (dict(inst), dict(inst))]:
        assert _rows(_record({"id": "urn:ngsi-ld:X:1", NO2: previous}, {"id": "urn:ngsi-ld:X:1", NO2: now})) == []


def test_a_changed_instance_makes_one_row_and_a_moved_dataset_a_deletion() -> None:
    was = _reading(20.5)
    assert len(_rows(_record({NO2: [was]}, {NO2: [_reading(21.5)]}))) == 1
    moved = {**was, "datasetId": "urn:ngsi-ld:Dataset:b"}
    assert [r["kind"] for r in _rows(_record({NO2: [was]}, {NO2: [moved]}))] == [0, 1]
    assert len(_rows(_record({NO2: [was, moved]}, {NO2: [was, moved]}))) == 0  # two instances: the walk
