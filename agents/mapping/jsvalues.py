"""JavaScript values as the agents' expressions see them: `undefined`, Number(v) and String(v).

Shared by the JEXL evaluator (agents.mapping.jexl) and its transforms
(agents.mapping.transforms), which both follow JavaScript's conversions.
"""

from __future__ import annotations

import math
import re
from typing import Any, Self

__all__ = ["NAN", "UNDEFINED", "js_number", "js_string"]


class _Undefined:
    """JavaScript's `undefined`: one instance, falsy."""

    _instance: Self | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()
NAN = float("nan")


def js_number(v: Any) -> float:
    """JavaScript Number(v)."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return v
    if v is None:
        return 0
    if v is UNDEFINED:
        return NAN
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return 0
        try:
            return int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
        except ValueError:
            return NAN
    if isinstance(v, list):
        return js_number(v[0]) if len(v) == 1 else (0 if not v else NAN)
    return NAN


def js_string(v: Any) -> str:
    """JavaScript String(v)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if v is UNDEFINED:
        return "undefined"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return ",".join("" if x is None or x is UNDEFINED else js_string(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)
