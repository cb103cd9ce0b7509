"""broker.body_limits.fits, check_limits' one-pass proof that a body is within the limits (issue 16, batch20).

check_limits returns at once when `fits` says yes and walks as before otherwise; these tests hold it to the
walk alone: `fits` says yes only where the walk finds nothing, and check_limits raises the same error (or
none) with `fits` as without it, for JSON values of every shape and limits small enough to be reached.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import http, limits
from broker.body_limits import fits
from broker.limits import Limits
from models.errors import BadRequestData

SMALL = Limits(max_depth=4, max_batch_entities=3, max_id_bytes=8, max_attributes=3, max_geometry_points=2)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["", "a", "Point", "a\x00b", "\x00", "é"]))
keys = st.sampled_from(["id", "type", "coordinates", "value", "a", "a\x00", "location", "@context"])
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
bodies = st.one_of(st.lists(json_values, max_size=5), st.dictionaries(keys, json_values, max_size=6))


def _checked(body: Any, *, nul: bool, monkeypatch: pytest.MonkeyPatch, bound: Limits, walk_only: bool) -> str | None:
    """check_limits' error for `body` under `bound` (None: accepted); `walk_only`: with `fits` saying no."""
    with monkeypatch.context() as m:
        if walk_only:
            m.setattr(http, "fits", lambda *_: False)
        m.setattr(limits, "current", lambda: bound)
        try:
            http.check_limits(body, nul=nul)
        except BadRequestData as error:
            return str(error)
    return None


def _walk_alone(body: Any, *, nul: bool, monkeypatch: pytest.MonkeyPatch, bound: Limits) -> str | None:
    return _checked(body, nul=nul, monkeypatch=monkeypatch, bound=bound, walk_only=True)


def _with_fits(body: Any, *, nul: bool, monkeypatch: pytest.MonkeyPatch, bound: Limits) -> str | None:
    return _checked(body, nul=nul, monkeypatch=monkeypatch, bound=bound, walk_only=False)


@settings(max_examples=400, deadline=None)
@given(body=bodies, nul=st.booleans(), bound=st.sampled_from([SMALL, Limits(), Limits(max_depth=2)]))
def test_fits_says_yes_only_where_the_walk_finds_nothing(body: Any, nul: bool, bound: Limits) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        walked = _walk_alone(body, nul=nul, monkeypatch=monkeypatch, bound=bound)
        if fits(body, bound, nul):  # the entity count, ids and attribute counts are checked before fits
            items_unbounded = replace(bound, max_batch_entities=10**6, max_id_bytes=10**6, max_attributes=10**6)
            assert _walk_alone(body, nul=nul, monkeypatch=monkeypatch, bound=items_unbounded) is None
        assert _with_fits(body, nul=nul, monkeypatch=monkeypatch, bound=bound) == walked


@pytest.mark.parametrize(("raw", "nul"), [
    (b"[[[[[]]]]]", False),  # five levels: past max_depth 4
    (b'[{"location":{"type":"Point","coordinates":[[1,2],[3,4],[5]]}}]', False),  # 5 numbers: past 2 positions
    (b'[{"a":"x\\u0000y"}]', True),
    (b'[{"a\\u0000":1}]', True),
], ids=["depth", "geometry", "nul in a string", "nul in a name"])
def test_fits_says_no_at_each_limit(raw: bytes, nul: bool) -> None:
    assert not fits(orjson.loads(raw), SMALL, nul)


def test_fits_says_yes_for_the_bench_batch() -> None:
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.3, 43.3]}},
              "no2": {"type": "Property", "value": 41.5, "observedAt": "2026-11-26T10:00:00Z", "unitCode": "GQ"},
              "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:1"}}
    assert fits([entity] * 3, Limits(), True)
    assert not fits([entity], Limits(max_depth=3), False)  # coordinates are at depth 5
    assert not fits("a scalar", Limits(), False)  # check_limits' walk decides
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    assert not fits(deep, Limits(max_depth=1000), False)  # no RecursionError: the walk decides
