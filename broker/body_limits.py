"""A parsed body's nesting, geometry sizes and NUL characters, proved within the limits in one pass.

`broker.http.check_limits` walks a parsed body with an explicit stack (a tuple per container, two
isinstance per child, a `get("coordinates")` per object): 12 µs per 1 KB batch entity, twice orjson's
parse of it, 5 % of the broker's samples under a 1,000-entity batch upsert (issue 16, batch20). `fits`
answers only whether the body is within those limits, by recursion with exact type tests; on any doubt
(a limit reached, a type orjson does not make, a nesting past 200) it says no and check_limits walks as before, so every
error raised, and the order in which it is found, stays check_limits' own.
"""

from __future__ import annotations

from typing import Any

from broker.limits import Limits

_SCALARS = frozenset((str, int, float, bool, type(None)))
_RECURSION = 200  # deeper than this (a max_depth set past it), the walk decides: no RecursionError here


def fits(body: Any, bound: Limits, nul: bool) -> bool:
    """True when check_limits' walk would find nothing in `body` (a dict or a list, as orjson parses it):
    no object or array nested deeper than `bound.max_depth`, no GeoJSON-like `coordinates` array with more
    than `bound.max_geometry_points` positions and, when `nul`, no NUL in a member name or a string."""
    max_depth = min(bound.max_depth, _RECURSION)
    max_numbers = 2 * bound.max_geometry_points

    def numbers_within(coordinates: list[Any]) -> bool:
        # _check_positions' count: every item of the nested lists that is not a list
        numbers, stack = 0, [coordinates]
        while stack:
            for item in stack.pop():
                if type(item) is list:
                    stack.append(item)
                else:
                    numbers += 1
        return numbers <= max_numbers

    def within(value: Any, depth: int) -> bool:
        if depth > max_depth:
            return False
        if type(value) is dict:
            if "coordinates" in value and "type" in value and type(value["coordinates"]) is list \
                    and not numbers_within(value["coordinates"]):
                return False
            if nul and any("\x00" in k for k in value):
                return False
            children: Any = value.values()
        else:
            children = value
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if not within(child, depth + 1):
                    return False
            elif kind not in _SCALARS or (nul and kind is str and "\x00" in child):
                return False
        return True

    kind = type(body)
    return (kind is dict or kind is list) and within(body, 1)
