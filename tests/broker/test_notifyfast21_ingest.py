"""/v2/notify's one-pass rows of NGSI-v2 entities (ingest.v2_prepared, issue 16, notifyfast21) are the two-pass path's.

`v2_prepared` must give, for every entity it takes, exactly what `prepare(tenant, eid, v2_entity(entity))`
gives (id, types, every row field by field, bytes included), leave out what the general path leaves out
(an entity with nothing to record) and pass (None) on everything else, so that the general path answers it
(or refuses it) as before. No HTTP here: test_notifyfast21_http.py sends notifications over a socket.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from broker.quantumleap import ingest
from broker.quantumleap import notify as nt
from broker.temporal.model import to_us
from models.context import SDM_ALL_CONTEXT_URL, ContextResolver
from models.errors import NgsiLdError
from models.validation import check_uri

STAMP = "2026-12-06T10:00:00.123Z"
NOW = "2026-12-06T10:00:00.456Z"
AT = "2026-03-01T00:00:05Z"


@pytest.fixture(scope="module")
def ctx() -> Any:
    return ContextResolver().resolve(SDM_ALL_CONTEXT_URL)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths read the clock once per entity: the same moment for both, so that their rows compare."""
    monkeypatch.setattr("broker.quantumleap.ingest.now_stamp", lambda: (STAMP, to_us(STAMP)))
    monkeypatch.setattr("broker.service.temporal.utc_now", lambda: STAMP)


def v2(**attrs: Any) -> dict[str, Any]:
    return {"id": "AirQualityObserved:00001", "type": "AirQualityObserved", **attrs}


TAKEN: list[Any] = [  # v2_prepared must make these itself (the bench's shape and its neighbours)
    v2(TimeInstant={"type": "DateTime", "value": AT}, no2={"type": "Number", "value": 20},
       o3={"type": "Number", "value": 40.5}, pm25={"type": "Number", "value": "6.25"}),
    v2(temperature={"type": "Number", "value": 11.5, "metadata": {"unitCode": {"value": "CEL"}}}),
    v2(count={"type": "Integer", "value": "7"}, on={"type": "Boolean", "value": "true"}, name={"type": "Text", "value": 12}),
    v2(note={"type": "Text", "value": "hello"}, seen={"type": "DateTime", "value": "2026-03-01T01:02:03.456Z"}),
    v2(plain=5, text="x", flag=True, big=2**63, neg=-0.0, low=-(2**63)),
    v2(ref={"type": "Other", "value": "urn:ngsi-ld:X:1"}, n={"value": 3}),
    v2(off={"type": "Boolean", "value": 0}, i={"type": "Integer", "value": 7.9}, f={"type": "Number", "value": True}),
    v2(t={"type": "Number", "value": 1, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2026-03-02T00:00:00Z"}}},
       u={"type": "Number", "value": 2, "metadata": {"dateModified": {"value": "2026-03-03T00:00:00.5Z"}}}),
    v2(dateModified={"type": "DateTime", "value": "2026-03-04T00:00:00Z"}, x={"type": "Number", "value": 1}),
    v2(x={"type": "Number", "value": 1, "metadata": {"unitCode": {"value": 5}}}, y={"type": "Number", "value": 2,
                                                                                   "metadata": []}),
    {"id": "urn:ngsi-ld:T:1", "type": "T", "x": {"type": "Number", "value": 1}},
    {"id": "Room1", "type": "https://example.org/Room", "temperature": {"type": "Number", "value": 21}},
]
LEFT_OUT: list[Any] = [  # nothing to record: the general path leaves the entity out
    v2(), v2(a={"type": "Number", "value": None}, b={"type": "Text", "value": ""}, c={"type": "Number", "value": "x"}),
    v2(d={"type": "DateTime", "value": "yesterday"}, e={"type": "Boolean", "value": "maybe"}),
]
PASSED: list[Any] = [  # the general path decides (and may refuse)
    v2(location={"type": "geo:point", "value": "43.3, -3.8"}),
    v2(location={"type": "Point", "value": {"type": "Point", "coordinates": [1, 2]}}),
    v2(ref={"type": "Relationship", "value": "urn:ngsi-ld:X:1"}), v2(ref={"type": "Reference", "value": "x"}),
    v2(nulled={"type": "Text", "value": "urn:ngsi-ld:null"}),
    v2(unit={"type": "Number", "value": 1, "metadata": {"unitCode": {"value": ""}}}),
    v2(**{"bad name": {"type": "Number", "value": 1}}),
    v2(when={"type": "Number", "value": 1, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2026-03-01"}}}),
    v2(scope={"type": "Text", "value": "/a"}), v2(createdAt={"type": "Text", "value": "x"}),
    v2(s={"type": "StructuredValue", "value": {"a": [1, 2]}}), v2(listed={"type": "Custom", "value": [1, "x"]}),
    v2(big=2**64), v2(low=-(2**63) - 1), v2(weird={"type": ["Number"], "value": 1}), v2(weird={"type": {"a": 1}, "value": 1}),
    {"id": "AirQualityObserved:1", "type": "bad type", "x": {"type": "Number", "value": 1}},
    {"id": "x y", "type": "T", "x": {"type": "Number", "value": 1}},
    {"id": "", "type": "T", "x": 1}, {"id": "a", "type": "", "x": 1}, {"id": 5, "type": "T"}, ["not", "an", "entity"],
]


def _two_pass(entity: Any, header_attr: str | None, ctx: Any) -> Any:
    """What the general path makes of one entity: ("left out",), its (id, types, rows), or its refusal."""
    try:
        converted = nt.v2_entity(entity, header_attr, NOW)
        if len(converted) <= 2:
            return ("left out",)
        eid = check_uri(converted.get("id"), "entity id")
        p = ingest.prepare("t", eid, converted, ctx)
    except (NgsiLdError, Exception) as exc:  # noqa: BLE001 - the refusal is compared, whatever it is
        return ("refused", type(exc).__name__, str(exc))
    return p.entity_id, p.types, [dataclasses.asdict(r) for r in p.rows]


def _one_pass(entity: Any, header_attr: str | None, ctx: Any) -> Any:
    p = ingest.v2_prepared("t", entity, header_attr, NOW, ctx)
    if p is None:
        return None
    if not p.rows:
        return ("left out",)
    return p.entity_id, p.types, [dataclasses.asdict(r) for r in p.rows]


@pytest.mark.parametrize("header_attr", [None, "seen", "TimeInstant", "nope"])
@pytest.mark.parametrize("n", range(len(TAKEN)))
def test_taken_entities_make_the_general_paths_rows(n: int, header_attr: str | None, ctx: Any, frozen: None) -> None:
    one = _one_pass(TAKEN[n], header_attr, ctx)
    assert one is not None, "the plain shape must take the one-pass path"
    assert one == _two_pass(TAKEN[n], header_attr, ctx)


@pytest.mark.parametrize("n", range(len(LEFT_OUT)))
def test_entities_with_nothing_to_record_are_left_out(n: int, ctx: Any, frozen: None) -> None:
    assert _one_pass(LEFT_OUT[n], None, ctx) == ("left out",) == _two_pass(LEFT_OUT[n], None, ctx)


@pytest.mark.parametrize("n", range(len(PASSED)))
def test_other_entities_are_left_to_the_general_path(n: int, ctx: Any, frozen: None) -> None:
    assert _one_pass(PASSED[n], None, ctx) is None
