"""History rows built by plan (broker.temporal.model.value_row, rows_of_change) against the uncompiled reference.

`value_row` decides once per member-name tuple, time text and layout what `value_row_reference`
decides per instance; `rows_of_change` skips the per-dataset dicts for single instances. These tests
hold both to their references field by field (every HistoryRow field, `packed` included, so the
stored bytes are the same), on instances in sequence, so that plans and cached times made by one
instance are applied to the next ones of other values, other time forms and other members.
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
TIMES = [
    "2026-11-26T10:05:00Z",  # whole seconds ('O')
    "2026-11-26T10:05:00.000Z",  # canonical milliseconds ('o')
    "2026-11-26T10:05:00.123Z",
    "2026-11-26T10:05:00.123456Z",  # microseconds: neither form, kept as JSON
    "2026-11-26T11:05:00+01:00",  # an offset: kept
    "2026-11-26T10:05:00",  # no offset (UTC)
    "1970-01-01T00:00:00Z",  # the epoch: `_opt_us(...) or default` passes over it
    "not a time",
    "",
    20261126,  # not a text
    None,
]


def fields(row: Any) -> dict[str, Any]:
    return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}


def same_row(inst: dict[str, Any], default_us: int = 1_796_569_200_123_000) -> None:
    try:
        expected: Any = fields(value_row_reference("t", "urn:ngsi-ld:X:1", NO2, dict(inst), default_us))
    except Exception as error:  # noqa: BLE001 - the same exception class is what is compared
        expected = type(error)
    try:
        got: Any = fields(value_row("t", "urn:ngsi-ld:X:1", NO2, dict(inst), default_us))
    except Exception as error:  # noqa: BLE001
        got = type(error)
    assert got == expected, inst


def test_a_plain_reading_is_the_reference_and_compact() -> None:
    inst = {"type": "Property", "value": 42.5, "observedAt": "2026-11-26T10:05:00Z", "unitCode": "GQ",
            "createdAt": "2026-12-06T15:00:00.123Z", "modifiedAt": "2026-12-06T15:00:00.123Z"}
    row = value_row("", "urn:x", NO2, inst, 1)
    assert row.packed == b'TVO*cm{"unitCode":"GQ"}'
    assert fields(row) == fields(value_row_reference("", "urn:x", NO2, inst, 1))


@pytest.mark.parametrize("members", [
    ("type", "value", "observedAt", "unitCode", "createdAt", "modifiedAt"),
    ("type", "value", "unitCode", "observedAt", "createdAt", "modifiedAt"),  # kept member between letters
    ("type", "value", "createdAt", "modifiedAt"),
    ("value", "observedAt"),  # no type: a Property
    ("type", "object", "observedAt", "datasetId", "createdAt", "modifiedAt"),
    ("type", "value", "object", "modifiedAt"),  # object beside value: kept
    ("type", "languageMap", "modifiedAt", "datasetId"),
    ("type", "value", "observedAt", "instanceId", "modifiedAt"),  # the reference's path
    ("type", "value", "observedAt", "deletedAt", "modifiedAt"),
    ("modifiedAt", "createdAt", "observedAt", "type", "value"),
    ("type",),
])
@pytest.mark.parametrize("kind", ["Property", "Relationship", "GeoProperty", "LanguageProperty", 7, None])
def test_every_time_form_and_member_order(members: tuple[str, ...], kind: Any) -> None:
    values = {"value": 20.5, "object": "urn:ngsi-ld:Device:1", "languageMap": {"fr": "bon"}, "unitCode": "GQ",
              "datasetId": "urn:ngsi-ld:Dataset:a", "instanceId": "urn:ngsi-ld:attribute-instance:9"}
    for t in TIMES:
        for other in (TIMES[0], TIMES[2], t):
            inst: dict[str, Any] = {}
            for m in members:
                if m == "type":
                    inst[m] = kind
                elif m in ("observedAt", "deletedAt"):
                    inst[m] = t
                elif m in ("createdAt", "modifiedAt"):
                    inst[m] = other if m == "createdAt" else t
                else:
                    inst[m] = values[m]
            same_row(inst)
            same_row(inst, default_us=0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
MEMBER = st.sampled_from(["type", "value", "object", "observedAt", "createdAt", "modifiedAt", "unitCode",
                          "datasetId", "languageMap", "vocab", "json", "valueList", "objectList", "deletedAt",
                          "instanceId", "providedBy", "x"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(MEMBER, st.sampled_from(TIMES[:7]) | st.sampled_from(["Property", "Relationship"])
                                | JSON, max_size=7), min_size=1, max_size=6))
def test_any_instances_in_sequence(instances: list[dict[str, Any]]) -> None:
    for inst in instances:
        same_row(inst)


def aqo(i: int, observed: str, **extra: Any) -> dict[str, Any]:
    stamp = "2026-12-06T15:00:00.123Z"

    def prop(v: Any, **more: Any) -> dict[str, Any]:
        return {"type": "Property", "value": v, "observedAt": observed, "unitCode": "GQ",
                "createdAt": stamp, "modifiedAt": stamp, **more}

    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:{i}", "type": ["https://smartdatamodels.org/AirQualityObserved"],
        "https://smartdatamodels.org/dataModel.Environment/no2": prop(20.0 + i),
        "https://smartdatamodels.org/dataModel.Environment/pm10": [prop(3.0), prop(4.0, datasetId="urn:ds:b")],
        "https://smartdatamodels.org/refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:1",
                                                   "createdAt": stamp, "modifiedAt": stamp},
        **extra,
    }


CHANGES = [
    (None, aqo(1, "2026-11-26T10:05:00Z")),  # created
    (aqo(1, "2026-11-26T10:05:00Z"), aqo(1, "2026-11-26T10:06:00Z")),  # every reading changed
    (aqo(1, "2026-11-26T10:05:00Z"), aqo(1, "2026-11-26T10:05:00Z")),  # nothing changed
    (aqo(1, "2026-11-26T10:05:00Z"), None),  # deleted
    (aqo(1, "2026-11-26T10:05:00Z"), aqo(2, "2026-11-26T10:05:00Z")),  # one value changed
    # an instance that moves to a dataset, one that leaves it, one that becomes several, an attribute gone
    (aqo(1, "2026-11-26T10:05:00Z", extra={"type": "Property", "value": 1, "datasetId": "urn:ds:a"}),
     {**aqo(1, "2026-11-26T10:05:00Z", extra={"type": "Property", "value": 1}),
      "https://smartdatamodels.org/dataModel.Environment/no2": {"type": "Property", "value": 1.0,
                                                                 "datasetId": "urn:ds:a"},
      "https://smartdatamodels.org/refDevice": [{"type": "Relationship", "object": "urn:a"},
                                                 {"type": "Relationship", "object": "urn:b", "datasetId": "urn:ds:c"}]}),
    ({"id": "urn:x", "type": ["T"], "a": {"type": "Property", "value": 1, "datasetId": ["not", "a", "text"]}},
     {"id": "urn:x", "type": ["T"], "a": {"type": "Property", "value": 2}}),
    ({"id": "urn:x", "type": ["T"], "a": "not an instance"}, {"id": "urn:x", "type": ["T"], "a": {"value": 2}}),
]


A = {"type": "Property", "value": 1.5, "observedAt": "2026-11-26T10:05:00Z", "modifiedAt": "2026-12-06T15:00:00.123Z"}
B = {**A, "value": 2.5}
A_DS = {**A, "datasetId": "urn:ds:a"}
FORMS: list[Any] = [None, A, [A], B, [B], [], [A_DS], A_DS, [A, A_DS], [A_DS, A], [A, "x"], ["x"], "x",
                    [{**A, "datasetId": None}], {**A, "datasetId": ""}, [A, A], [A_DS, {**B, "datasetId": "urn:ds:a"}]]
# an attribute as stored (a list of one instance), as a dict, several, none, not instances: every pair
CHANGES += [({"id": "urn:x", "type": ["T"], **({} if b is None else {"a": b})},
             {"id": "urn:x", "type": ["T"], **({} if a is None else {"a": a})}) for b in FORMS for a in FORMS]


@pytest.mark.parametrize(("before", "after"), CHANGES)
def test_rows_of_change_is_the_reference(before: Any, after: Any) -> None:
    record = ChangeRecord(7, "t", "urn:ngsi-ld:AirQualityObserved:1", before, after, "2026-12-06T15:00:00.456Z")
    try:
        expected: Any = rows_of_change_reference(record)
        expected = (fields(expected[0]), [fields(r) for r in expected[1]])
    except Exception as error:  # noqa: BLE001 - the same exception class is what is compared
        expected = type(error)
    try:
        got: Any = rows_of_change(record)
        got = (fields(got[0]), [fields(r) for r in got[1]])
    except Exception as error:  # noqa: BLE001
        got = type(error)
    assert got == expected


def test_now_stamp_is_utc_now_and_to_us_of_it() -> None:
    from broker.service.patch import utc_now
    from broker.temporal import model

    before = model.to_us(utc_now())
    text, us = model.now_stamp()
    after = model.to_us(utc_now())
    assert len(text) == len(utc_now()) and text.endswith("Z") and text[19] == "."
    assert before <= us <= after and us == model.to_us(text) and text == model.from_us(us)
    seeded = model._TIMES.pop(text)
    assert seeded == model._time(text)  # what value_row would have worked out itself


def _time_reference(text: Any) -> tuple[int, int] | None:
    """What model._time answered before its fast path for millisecond texts (issue 16, loop19)."""
    from broker.temporal import model

    if type(text) is not str:
        return None
    try:
        us = model._parse_us(text)
    except (ValueError, AttributeError, TypeError):
        return None
    if not us:
        return None
    return us, 1 if text == model._stamp_ms(us) else 2 if text == model._stamp_s(us) else 0


MS_LOOKALIKES = [
    "2026-12-06T21:58:53.047Z", "2026-12-06T21:58:53.000Z", "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.001Z",
    "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z",
    "2026-12-06 21:58:53.047Z", "2026-12-06t21:58:53.047Z", "2026-12-06T21:58:53.047z", "2026-12-06T21:58:53,047Z",
    "2026-02-30T21:58:53.047Z", "2026-12-06T23:59:60.000Z", "2026-12-06T24:00:00.000Z", "2026-12-06T21:58:5a.047Z",
    "2026-12-06T21:58:53.04٣Z", "٢026-12-06T21:58:53.047Z", "2026-12-06T21:58:53.+47Z", "2026-12-06T21:58:53. 47Z",
    "+026-12-06T21:58:53.047Z", "20261206T215853.047Z....", "2026-12-06T21:58:53.0470", "2026-12-06T21:58:53.047+00:00",
    "2026-12-06T21:58:53Z", "2026-12-06T21:58:53.047123Z",
]


@pytest.mark.parametrize("text", MS_LOOKALIKES)
def test_time_of_millisecond_texts_is_the_reference(text: str) -> None:
    from broker.temporal import model

    model._TIMES.clear()
    assert model._time(text) == _time_reference(text)
    assert model._time(text) == _time_reference(text)  # again, its second text cached


@settings(max_examples=300, deadline=None)
@given(st.integers(-62_135_596_800_000, 253_402_300_799_999), st.sampled_from(["", "T", ".", "Z", "0", "9", " "]),
       st.integers(0, 23))
def test_time_of_any_millisecond_stamp_and_its_variants(ms: int, char: str, where: int) -> None:
    from broker.temporal import model

    text = model.from_us(ms * 1000)
    for candidate in (text, text[:where] + char + text[where + 1:]):
        model._TIMES.clear()
        assert model._time(candidate) == _time_reference(candidate), candidate


def test_rows_of_change_with_attributes_shared_by_before_and_after() -> None:
    # the store's records after a one-attribute PATCH: `after` holds the before document's own lists for
    # every attribute but the patched one (Change.before_intact); an attribute gone, one added
    before = {**aqo(1, "2026-11-26T10:05:00Z"), "gone": [dict(A)], "createdAt": "2026-12-06T15:00:00.123Z",
              "modifiedAt": "2026-12-06T15:00:00.123Z"}
    for after in ({**before, NO2: [{**before[NO2], "value": 7.5, "modifiedAt": "2026-12-06T15:00:00.456Z"}],
                   "modifiedAt": "2026-12-06T15:00:00.456Z"},
                  {k: v for k, v in before.items() if k != "gone"},
                  {**before, "new": [dict(B)]}, dict(before)):
        record = ChangeRecord(7, "t", "urn:ngsi-ld:AirQualityObserved:1", before, after, "2026-12-06T15:00:00.456Z")
        got, expected = rows_of_change(record), rows_of_change_reference(record)
        assert (fields(got[0]), [fields(r) for r in got[1]]) == (fields(expected[0]), [fields(r) for r in expected[1]])
    assert len(rows_of_change(ChangeRecord(7, "t", "urn:x", before, {k: v for k, v in before.items() if k != "gone"},
                                           "2026-12-06T15:00:00.456Z"))[1]) == 1  # the deletion of "gone"
