"""The JEXL transforms of iotagent-node-lib (jexlTransformsMap.js), with JavaScript behaviour."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from agents.mapping.jsvalues import UNDEFINED, js_number, js_string
from models.times import utc_iso

__all__ = ["TRANSFORMS"]


_s = js_string
_n = js_number


def _parse_int(v: Any) -> float:
    m = re.match(r"\s*([+-]?\d+)", _s(v))
    return int(m.group(1)) if m else math.nan


def _parse_float(v: Any) -> float:
    m = re.match(r"\s*([+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Infinity))", _s(v))
    if not m:
        return math.nan
    f = float(m.group(1).replace("Infinity", "inf"))
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _date(v: Any) -> datetime:
    if isinstance(v, bool):
        raise ValueError("Invalid time value")
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v / 1000, tz=UTC)
    text = _s(v).strip()
    d = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _iso(v: Any) -> str:
    return utc_iso(_date(v))  # Date.prototype.toISOString: milliseconds


def _substr(v: Any, start: Any, length: Any = None) -> str:
    s = _s(v)
    i = int(_n(start))
    if i < 0:
        i = max(len(s) + i, 0)
    if length is None:
        return s[i:]
    return s[i : i + max(int(_n(length)), 0)]


def _timeoffset(v: Any) -> int:
    _date(v)  # jexlTransformsMap.js: new Date(v).getTimezoneOffset(), 0 in UTC; an unreadable date fails
    return 0


def _typeof(v: Any) -> str:
    if v is UNDEFINED:
        return "undefined"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "object"


def _to_fixed(v: Any, decimals: Any = 0) -> str:
    return f"{_parse_float(v):.{int(_n(decimals))}f}"


def _mapper(val: Any, values: list[Any], choices: list[Any]) -> Any:
    for i, target in enumerate(values):
        if target == val:
            return choices[i] if i < len(choices) else UNDEFINED
    return UNDEFINED


def _thmapper(val: Any, values: list[Any], choices: list[Any]) -> Any:
    for i, bound in enumerate(values):
        if _n(val) <= _n(bound):
            return choices[i] if i < len(choices) else UNDEFINED
    return UNDEFINED


def _bitwise(i: Any, mask: Any, op: str, shift: Any) -> int:
    x = int(_parse_int(i))
    m = int(_n(mask))
    r = {"&": x & m, "|": x | m, "^": x ^ m}.get(op, x)
    return r >> int(_n(shift))


def _round(v: Any) -> int:
    return math.floor(_n(v) + 0.5)


def _dedupe_add(arr: list[Any], x: Any) -> list[Any]:
    out = list(dict.fromkeys(json.dumps(a, sort_keys=True) for a in arr))
    items = [json.loads(a) for a in out]
    return items if x in items else [*items, x]


def _remove(arr: list[Any], x: Any) -> list[Any]:
    seen: list[Any] = []
    for a in arr:
        if a != x and a not in seen:
            seen.append(a)
    return seen


def _hextostring(v: Any) -> str:
    return bytes.fromhex(_s(v)).decode("utf-8", errors="replace")


TRANSFORMS: dict[str, Callable[..., Any]] = {
    "jsonparse": lambda s: json.loads(_s(s)),
    "jsonstringify": lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False),
    "indexOf": lambda v, ch: _s(v).find(_s(ch)),
    "length": lambda v: len(_s(v)),
    "trim": lambda v: _s(v).strip(),
    "substr": _substr,
    "addreduce": lambda arr: sum(_n(x) for x in arr),
    "lengtharray": lambda arr: len(arr),
    "typeof": _typeof,
    "isarray": lambda a: isinstance(a, list),
    "isnan": lambda v: isinstance(_n(v), float) and math.isnan(_n(v)),
    "parseint": _parse_int,
    "parsefloat": _parse_float,
    "toisodate": _iso,
    "timeoffset": _timeoffset,
    "tostring": lambda v: _s(v),
    "urlencode": lambda v: quote(_s(v), safe="~@#$&()*!+=:;,.?/'-_"),
    "urldecode": lambda v: unquote(_s(v)),
    "replacestr": lambda s, a, b: _s(s).replace(_s(a), _s(b), 1),
    "replaceregexp": lambda s, r, b: re.sub(_s(r), _s(b), _s(s), count=1),
    "replaceallstr": lambda s, a, b: _s(s).replace(_s(a), _s(b)),
    "replaceallregexp": lambda s, r, b: re.sub(_s(r), _s(b), _s(s)),
    "split": lambda s, ch: _s(s).split(_s(ch)) if _s(ch) else list(_s(s)),
    "joinarrtostr": lambda arr, ch: _s(ch).join(_s(x) for x in arr),
    "concatarr": lambda a, b: [*a, *(b if isinstance(b, list) else [b])],
    "mapper": _mapper,
    "thmapper": _thmapper,
    "bitwisemask": _bitwise,
    "slice": lambda arr, a=None, b=None: arr[None if a is None else int(_n(a)) : None if b is None else int(_n(b))],
    "addset": _dedupe_add,
    "removeset": _remove,
    "touppercase": lambda v: _s(v).upper(),
    "tolowercase": lambda v: _s(v).lower(),
    "round": _round,
    "floor": lambda v: math.floor(_n(v)),
    "ceil": lambda v: math.ceil(_n(v)),
    "tofixed": _to_fixed,
    "gettime": lambda d: int(_date(d).timestamp() * 1000),
    "toisostring": _iso,
    "localestring": lambda d, tz=None, opts=None: _date(d).isoformat(),
    "now": lambda *_: int(time.time() * 1000),
    "hextostring": _hextostring,
}
