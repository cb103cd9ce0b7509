"""A SQL prefilter derived from a parsed q: a condition every entity the q predicate accepts meets.

    q AST --q_prefilter(root, expand)--> Prefilter (store-neutral tree) --each store--> SQL

The prefilter never replaces the predicate compiled by broker.query.q: the
store adds it to its WHERE and still runs the predicate on every row that
passes, so it may let through entities the predicate rejects (a superset),
but must never drop one the predicate accepts. Only terms whose Python
semantics are simple enough to make that obvious are pushed down:

- `attr` (a plain attribute name): the attribute is a member of the document
  (the predicate needs an instance yielding a target, so a present key);
- `attr <op> number` with op among == > >= < <=, a numeric range `a..b`
  after ==, or a list of numbers after ==: some instance of the attribute
  is not a Property whose `value` is a bare JSON number, or is one with the
  number in the widened interval(s) (see AttrNumberIn);
- `;` keeps the pushable terms (dropping a term only widens), `|` needs
  every branch pushable.

Not pushed: negations (!=, !~=, !attr), patterns, string, boolean and
temporal values, sub-attribute, `[...]` and linked paths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from broker.query.q import And, Comparison, Exists, Node, Number, Or, Path, Range, ValueList, ValuePath

__all__ = ["AllOf", "AnyOf", "AttrExists", "AttrNumberIn", "Interval", "Prefilter", "q_prefilter"]

Interval: TypeAlias = tuple[float | None, float | None]
"""Closed bounds (low, high); None: unbounded on that side."""


@dataclass(frozen=True, slots=True)
class AttrExists:
    """The document has the member `iri` (whatever its value)."""

    iri: str


@dataclass(frozen=True, slots=True)
class AttrNumberIn:
    """Some instance of the attribute `iri` is not rejectable (a single object instead of the
    ENF array counts as one instance, as the predicate reads it).

    An instance is rejectable when it is an object whose `type` is the string
    "Property" and whose `value` is a JSON number (true/false are not) in none
    of `intervals`: the predicate reads that number alone and the comparison
    fails. Any other instance (arrays, typed literals, strings, Relationships,
    LanguageProperty maps...) is let through for Python to decide; a store may
    let through more, never less. `intervals` is never empty and each is
    bounded on at least one side.
    """

    iri: str
    intervals: tuple[Interval, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every term holds."""

    terms: tuple[Prefilter, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Some term holds."""

    terms: tuple[Prefilter, ...]


Prefilter: TypeAlias = AttrExists | AttrNumberIn | AllOf | AnyOf

# A bound b becomes [b - d, b + d] with d = |b|·_SLACK + _TINY: the stores do not read numbers
# as Python does (SQLite 3.40's decimal-to-double conversion is not always correctly rounded,
# PostgreSQL compares the exact decimals of the JSON text where Python compares doubles, and
# Python compares ints and floats exactly). Those differences are within an ulp or two, far
# inside the margin; _TINY covers subnormals, whose relative error has no bound. A value in
# the margin merely goes on to Python, which decides exactly.
_SLACK = 1e-9
_TINY = 1e-300

# Keys usable as `$."key"` in a SQLite JSON path and a PostgreSQL jsonpath with no escaping:
# SQLite ends the key at the next '"' and compares it with the JSON text's raw (escaped)
# label, and orjson escapes '"', '\' and control characters. No valid IRI has any of them.
_PLAIN_KEY = re.compile(r'[^"\\\x00-\x1f]+')


def q_prefilter(node: Node, expand: Callable[[str], str]) -> Prefilter | None:
    """The prefilter implied by a q AST, attribute terms expanded by `expand`; None when nothing is pushable."""
    if isinstance(node, And):
        parts = [p for t in node.terms if (p := q_prefilter(t, expand)) is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    if isinstance(node, Or):
        branches = [q_prefilter(t, expand) for t in node.terms]
        if any(b is None for b in branches):
            return None  # that branch may accept any entity
        return AnyOf(tuple(b for b in branches if b is not None))
    if isinstance(node, Exists):
        iri = _plain_iri(node.path, expand)
        return None if iri is None else AttrExists(iri)
    if isinstance(node, Comparison):
        iri = _plain_iri(node.path, expand)
        intervals = _intervals(node)
        return None if iri is None or intervals is None else AttrNumberIn(iri, intervals)
    return None  # NotExists, Pattern


def _plain_iri(path: Path, expand: Callable[[str], str]) -> str | None:
    """The expanded attribute of a bare `attr` path (the compiler's fast path), if safely addressable."""
    if not isinstance(path, ValuePath) or len(path.names) != 1 or path.trail:
        return None
    iri = expand(path.names[0])
    return iri if _PLAIN_KEY.fullmatch(iri) else None


def _intervals(node: Comparison) -> tuple[Interval, ...] | None:
    """Widened intervals holding every number the comparison accepts; None when not numeric or not pushable."""
    op, value = node.op, node.value
    if op == "!=":
        return None
    if isinstance(value, Number):
        bounds = _widen(value.value)
        if bounds is None:
            return None
        low, high = bounds
        return _bounded(((low, high) if op == "==" else (low, None) if op in (">", ">=") else (None, high),))
    if op != "==":
        return None
    if isinstance(value, Range) and isinstance(value.low, Number) and isinstance(value.high, Number):
        low_bounds, high_bounds = _widen(value.low.value), _widen(value.high.value)
        if low_bounds is None or high_bounds is None:
            return None
        return _bounded(((low_bounds[0], high_bounds[1]),))
    if isinstance(value, ValueList) and all(isinstance(i, Number) for i in value.items):  # lists of numbers only
        widened = [_widen(i.value) for i in value.items if isinstance(i, Number)]
        intervals = tuple(w for w in widened if w is not None)
        return _bounded(intervals) if len(intervals) == len(widened) else None
    return None


def _bounded(intervals: tuple[Interval, ...]) -> tuple[Interval, ...] | None:
    # an interval unbounded on both sides would only say "some instance": not worth a JSON walk
    return None if any(low is None and high is None for low, high in intervals) else intervals


def _widen(bound: float) -> Interval | None:
    """[bound - d, bound + d] as finite floats (a side beyond the doubles is unbounded); None if bound is not finite."""
    try:
        x = float(bound)
    except OverflowError:  # an int beyond the doubles: not worth a special case
        return None
    if not math.isfinite(x):
        return None
    d = abs(x) * _SLACK + _TINY
    low, high = x - d, x + d
    return (low if math.isfinite(low) else None, high if math.isfinite(high) else None)
