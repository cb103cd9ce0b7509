"""Value literals of the NGSI-LD query language and the semantics of its operators (clause 4.9).

Split from `broker.query.q` (the parser, printer and compiler), which
re-exports these names: `compile_test(op, operand, ...)` turns one
comparison into a check of one attribute target, with the spec's rules on
type mismatches, arrays and value lists.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, Literal, TypeAlias

from broker.query.regex import compile_pattern

Operator: TypeAlias = Literal["==", "!=", ">", ">=", "<", "<="]

# ----------------------------------------------------------------------------- values


@lru_cache(maxsize=65536)
def parse_temporal(kind: str, text: str) -> float | None:
    """The order key of a DateTime (epoch seconds), Date (ordinal) or Time (seconds of the UTC day).

    None when `text` is not of that kind: a type mismatch never matches (clause 4.9). Naive
    values are taken as UTC, as clause 4.6.3 asks producers to send UTC.
    """
    try:
        if kind == "dateTime":
            if "T" not in text:
                return None
            dt = datetime.fromisoformat(text)
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        if kind == "date":
            return float(date.fromisoformat(text).toordinal()) if len(text) == 10 else None
        t = time.fromisoformat(text)
        offset = t.utcoffset()
        seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
        return seconds - (offset.total_seconds() if offset else 0.0)
    except ValueError:
        return None


@dataclass(frozen=True)
class Number:
    """A JSON number."""

    value: int | float

    def text(self) -> str:
        return json.dumps(self.value)


@dataclass(frozen=True)
class String:
    """A JSON string, already unescaped."""

    value: str

    def text(self) -> str:
        return json.dumps(self.value, ensure_ascii=False)


@dataclass(frozen=True)
class Boolean:
    """`true` or `false`."""

    value: bool

    def text(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True)
class Temporal:
    """A DateTime, Date or Time literal (clause 4.6.3), compared as a time value."""

    kind: Literal["dateTime", "date", "time"]
    literal: str

    @property
    def key(self) -> float:
        key = parse_temporal(self.kind, self.literal)
        assert key is not None, "the parser only builds valid temporal literals"
        return key

    def text(self) -> str:
        return self.literal


@dataclass(frozen=True)
class Uri:
    """An unquoted URI (or bare term, for expandValues and VocabProperty)."""

    value: str

    def text(self) -> str:
        return self.value


Scalar: TypeAlias = Number | String | Boolean | Temporal | Uri


@dataclass(frozen=True)
class Range:
    """`low..high`, both included; both bounds are of one type."""

    low: Number | String | Temporal
    high: Number | String | Temporal

    def text(self) -> str:
        return f"{self.low.text()}..{self.high.text()}"


@dataclass(frozen=True)
class ValueList:
    """`a,b,c`: equal to any of them."""

    items: tuple[Scalar, ...]

    def text(self) -> str:
        return ",".join(i.text() for i in self.items)


Value: TypeAlias = Scalar | Range | ValueList

_REL, _VALUE, _VOCAB = 0, 1, 2  # kinds of target: only ==/!= apply to relationships (clause 4.9)
Target: TypeAlias = tuple[int, Any]
Test: TypeAlias = Callable[[int, Any], bool]
_Check: TypeAlias = Callable[[Any], bool]


def _coercer(literal: Number | String | Temporal) -> Callable[[Any], Any]:
    """Target value -> comparable key of the literal's type, or None on a type mismatch."""
    if isinstance(literal, Number):
        return lambda v: v if type(v) is int or type(v) is float else None
    if isinstance(literal, String):
        return lambda v: v if isinstance(v, str) else None
    kind = literal.kind
    return lambda v: parse_temporal(kind, v) if isinstance(v, str) else None


def _key(literal: Number | String | Temporal) -> Any:
    return literal.key if isinstance(literal, Temporal) else literal.value


def _equals(value: Value, expand: Callable[[str], str], expand_value: bool) -> tuple[_Check, _Check]:
    """Equality checks of one scalar target: (for ordinary values, for VocabProperty values)."""
    if isinstance(value, Number):
        n = value.value
        number: _Check = lambda v: (type(v) is int or type(v) is float) and v == n  # bools excluded
        return number, number
    if isinstance(value, Boolean):
        b = value.value
        boolean: _Check = lambda v: v is b
        return boolean, boolean
    if isinstance(value, Temporal):
        kind, key = value.kind, value.key
        temporal: _Check = lambda v: isinstance(v, str) and parse_temporal(kind, v) == key
        return temporal, temporal
    if isinstance(value, Range):
        coerce, low, high = _coercer(value.low), _key(value.low), _key(value.high)

        def in_range(v: Any) -> bool:
            c = coerce(v)
            return c is not None and low <= c <= high

        return in_range, in_range
    if isinstance(value, ValueList):
        checks = [_equals(i, expand, expand_value) for i in value.items]
        plain, vocab = tuple(c[0] for c in checks), tuple(c[1] for c in checks)
        return (lambda v: any(c(v) for c in plain)), (lambda v: any(c(v) for c in vocab))
    s = value.value
    # VocabProperty values are stored expanded, so the query value is compared expanded too.
    expanded = frozenset({s, expand(s)})
    in_expanded: _Check = lambda v: isinstance(v, str) and v in expanded
    return (in_expanded if expand_value else (lambda v: v == s)), in_expanded


_ORDER: dict[str, Callable[[Any, Any], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def compile_test(op: str, operand: Any, negated: bool, expand: Callable[[str], str], expand_value: bool) -> Test:
    """The check of one target `(kind, value)` for an operator and its operand (clause 4.9 semantics).

    An array target matches ==, ordering and ~= when one element does; != and !~= are the
    negations (an array of non-strings never matches !~=, the spec wants strings there).
    """
    if op == "~=":
        search = compile_pattern(operand).search

        def pattern(kind: int, v: Any) -> bool:
            if kind == _REL:
                return False
            if isinstance(v, str):
                return (search(v) is None) if negated else (search(v) is not None)
            if isinstance(v, list):
                strings = [x for x in v if isinstance(x, str)]
                if negated:
                    return bool(strings) and all(search(x) is None for x in strings)
                return any(search(x) is not None for x in strings)
            return False

        return pattern
    if op in ("==", "!="):
        eq, eq_vocab = _equals(operand, expand, expand_value)

        def equal(kind: int, v: Any) -> bool:
            check = eq_vocab if kind == _VOCAB else eq
            if isinstance(v, list):
                return any(check(x) for x in v)
            return check(v)

        if op == "==":
            return equal
        return lambda kind, v: not equal(kind, v)
    compare, coerce, bound = _ORDER[op], _coercer(operand), _key(operand)
    if isinstance(operand, Number):  # the hot case: numeric thresholds on measurements

        def number(kind: int, v: Any) -> bool:
            if type(v) is float or type(v) is int:
                return kind != _REL and compare(v, bound)
            return isinstance(v, list) and kind != _REL and any(
                (type(x) is float or type(x) is int) and compare(x, bound) for x in v
            )

        return number

    def one(v: Any) -> bool:
        c = coerce(v)
        return c is not None and compare(c, bound)

    def order(kind: int, v: Any) -> bool:
        if kind == _REL:
            return False
        if isinstance(v, list):
            return any(one(x) for x in v)
        return one(v)

    return order
