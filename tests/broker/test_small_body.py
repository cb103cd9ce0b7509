"""broker.limits.small_body: bodies smaller than it are not walked by check_limits, so no body past a limit may be
that small (the smallest body past each limit, for several settings of the limits)."""

from __future__ import annotations

import orjson
import pytest

from broker import limits
from broker.http import check_limits
from broker.limits import Limits
from models.errors import BadRequestData


def _smallest_past_each_limit(bound: Limits) -> dict[str, bytes]:
    depth = bound.max_depth + 1
    return {
        "depth": b"[" * depth + b"]" * depth,
        "batch": b"[" + b",".join(b"0" for _ in range(bound.max_batch_entities + 1)) + b"]",
        "id": b'{"id":"' + b"a" * (bound.max_id_bytes + 1) + b'"}',
        "id, escaped": b'{"id":"' + b"\\u00e9" * (bound.max_id_bytes // 2 + 1) + b'"}',
        "attributes": b"{" + b",".join(orjson.dumps(f"a{i}") + b":0" for i in range(bound.max_attributes + 1)) + b"}",
        "attributes, one letter": b"{" + b",".join(orjson.dumps(chr(97 + i)) + b":0"
                                                   for i in range(bound.max_attributes + 1)) + b"}",
        "geometry": b'{"type":"Point","coordinates":[' + b",".join(
            b"0" for _ in range(2 * bound.max_geometry_points + 1)) + b"]}",
    }


@pytest.mark.parametrize("bound", [
    Limits(),
    Limits(max_depth=1, max_batch_entities=1, max_id_bytes=1, max_attributes=1, max_geometry_points=1),
    Limits(max_depth=6, max_batch_entities=3, max_id_bytes=64, max_attributes=5, max_geometry_points=4),
    Limits(max_depth=1000, max_batch_entities=2, max_id_bytes=5000, max_attributes=3, max_geometry_points=1000),
], ids=["defaults", "ones", "small", "mixed"])
def test_no_body_past_a_limit_is_smaller_than_small_body(bound: Limits) -> None:
    previous = limits.current()
    limits.configure(bound)
    try:
        small = limits.small_body()
        for name, raw in _smallest_past_each_limit(bound).items():
            if name == "attributes, one letter" and bound.max_attributes >= 26:
                continue
            with pytest.raises(BadRequestData):
                check_limits(orjson.loads(raw))
            assert len(raw) >= small, (name, len(raw), small)
    finally:
        limits.configure(previous)


def test_small_body_follows_the_limits_in_force() -> None:
    previous = limits.current()
    try:
        limits.configure(Limits())
        assert limits.small_body() == 130  # 2 x (64 + 1): the nesting bound is the smallest by default
        limits.configure(Limits(max_id_bytes=10))
        assert limits.small_body() == 13
    finally:
        limits.configure(previous)
