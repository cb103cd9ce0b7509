"""The fuzz targets: hypothesis strategies for each input language and the check of what comes out.

Every target is a function `one(data)` run under hypothesis: it feeds one generated input and raises
`Failure` when the code under test answers anything but a value or a refusal it is allowed to make (an
NGSI-LD error of status below 500, a codec's CodecError). The in-process targets (q, geo-query, temporal
parameters, codecs) call the parsers directly; `bodies` and `openapi` (fuzz/api.py) go through a socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from agents.codecs import CodecError
from agents.lorawan.catalog import catalog
from agents.protocols import decoder_for
from broker.query.geo import compile_geo, parse_geoquery
from broker.query.q import compile_q
from broker.service.entities import to_enf
from broker.temporal.query import TemporalQuery
from models.context import ContextResolver
from models.errors import NgsiLdError


class Failure(Exception):
    """The code under test crashed (or answered 5xx) on a generated input."""


HOSTILE = ["", "\x00", "\u0000x", "(" * 600, ")" * 3, "a" * 5000, "(a+)+$", "\\", '"', "'", "%00", "../../etc/passwd",
           "#", "+", "é東京", "\ud7ff", "NaN", "Infinity", "-0", "1e999", "[]", "{}", "null", "[[[[[]]]]]", ";", "|"]


def _refusal_ok(exc: BaseException) -> bool:
    # 501 OperationNotSupported: what the API answers for a feature not offered (q over linked entities here)
    return isinstance(exc, NgsiLdError) and (exc.status < 500 or exc.status == 501)


def checked(call: Callable[[], Any], what: str) -> Any:
    """Run `call`; an NGSI-LD refusal (status < 500) is fine, anything else raised is a Failure."""
    try:
        return call()
    except Exception as exc:
        if _refusal_ok(exc):
            return None
        raise Failure(f"{what}: {type(exc).__name__}: {exc}"[:500]) from exc


# ---------------------------------------------------------------- q language (clause 4.9)

_Q_TOKENS = ["a", "b.c", "x[y]", "x[y.z]", "r{t}", "==", "!=", ">", ">=", "<", "<=", "~=", "!~=", "!", ";", "|",
             "(", ")", "..", ",", '"s"', "'s'", "1", "-2.5e3", "true", "null", "2020-01-01T00:00:00Z",
             "2020-01-01", "12:00:00", "urn:x:1", '"(a+)+$"', "[", "]", "{", "}", " ", "\\", "\"", "*", "@"]
q_text = st.one_of(st.lists(st.sampled_from(_Q_TOKENS), max_size=25).map("".join), st.text(max_size=60),
                   st.sampled_from(HOSTILE))
ENTITY = to_enf({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": "aaaa", "s": {
    "type": "Property", "value": [1, "x"]}}, "n": {"type": "Property", "value": {"x": {"y": 3}}},
    "r": {"type": "Relationship", "object": "urn:x:2"}, "d": {"type": "Property", "value": "2020-01-01T00:00:00Z"},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29]}}},
    ContextResolver().resolve(None))


def _expand(term: str) -> str:
    return term if ":" in term else "https://uri.etsi.org/ngsi-ld/default-context/" + term


def q_target(text: str) -> None:
    query = checked(lambda: compile_q(text), f"q={text!r}")
    if query is not None:
        predicate = checked(lambda: query.compile(_expand), f"q={text!r} compile")
        if predicate is not None:
            checked(lambda: predicate(ENTITY), f"q={text!r} evaluate")


# ---------------------------------------------------------------- geo-query (clause 4.10)

_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                    st.floats(-180, 180), st.just("x"), st.none())
_position = st.lists(_number, max_size=4)
_coordinates = st.one_of(_position, st.lists(_position, max_size=6), st.lists(st.lists(_position, max_size=6),
                                                                             max_size=3),
                         st.recursive(st.lists(_number, max_size=3), lambda c: st.lists(c, max_size=3), max_leaves=20))
georel = st.one_of(st.sampled_from(["near;maxDistance==1000", "near;minDistance==5", "within", "contains",
                                    "intersects", "equals", "disjoint", "overlaps", "near", "near;maxDistance==-1",
                                    "near;maxDistance==NaN", "near;maxDistance==1e309"]), st.text(max_size=20))
geometry = st.one_of(st.sampled_from(["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                                      "MultiPolygon", "GeometryCollection", "point"]), st.text(max_size=10))
LOCATED = ENTITY


def geo_target(rel: str, kind: str, coords: Any, as_text: bool) -> None:
    value = json.dumps(coords, allow_nan=True) if as_text else coords
    query = checked(lambda: parse_geoquery(rel, kind, value, None), f"geoQ {rel!r} {kind!r} {str(value)[:200]}")
    if query is not None:
        predicate = checked(lambda: compile_geo(query, _expand), f"geo compile {rel!r} {kind!r} {str(value)[:200]}")
        if predicate is not None:
            checked(lambda: predicate(LOCATED), f"geo evaluate {rel!r} {kind!r} {str(value)[:200]}")


# ---------------------------------------------------------------- temporal parameters (clause 4.11, 6.18)

_time = st.one_of(st.sampled_from(["2020-01-01T00:00:00Z", "2020-01-01T00:00:00.123456789+14:00", "2020-13-45",
                                   "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday"]), st.text(max_size=30))
temporal_params = st.fixed_dictionaries({}, optional={
    "timerel": st.one_of(st.sampled_from(["before", "after", "between"]), st.text(max_size=10)),
    "timeAt": _time, "endTimeAt": _time,
    "timeproperty": st.one_of(st.sampled_from(["observedAt", "createdAt", "modifiedAt", "deletedAt"]), st.text()),
    "lastN": st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=5)),
    "aggrMethods": st.one_of(st.sampled_from(["totalCount", "sum,avg", "min,max,stddev,sumsq", "distinctCount"]),
                             st.text(max_size=15)),
    "aggrPeriodDuration": st.one_of(st.sampled_from(["PT1H", "P1D", "P0D", "PT0S", "P99999999Y", "P1M"]),
                                    st.text(max_size=10)),
    "options": st.one_of(st.sampled_from(["temporalValues", "aggregatedValues", "sysAttrs", "keyValues"]),
                         st.text(max_size=20)),
    "format": st.sampled_from(["temporalValues", "aggregatedValues", "simplified", "x"]),
})


def temporal_target(params: dict[str, str], attrs_given: bool) -> None:
    tq = checked(lambda: TemporalQuery.from_params(params, attrs_given=attrs_given), f"temporal {params!r}")
    if tq is not None:
        checked(tq.time_range, f"temporal range {params!r}")


# ---------------------------------------------------------------- payload codecs (agents/codecs)

_UL = st.lists(st.sampled_from(["t", "|", "#", "1", "-2.5", "x|", "||", "\x00", "é", "\n", "a|b|c", "9" * 30]),
               max_size=20).map("".join).map(str.encode)
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text(max_size=8)),
                     lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
                     max_leaves=25).map(lambda v: json.dumps(v).encode())
payload = st.one_of(st.binary(max_size=64), _UL, _JSON)
CODECS = sorted(catalog())


def codec_target(protocol: str, data: bytes, fport: int) -> None:
    if protocol in ("json", "ul"):
        decode = decoder_for(protocol)
        call: Callable[[], Any] = lambda: decode(data)
    else:
        codec = catalog()[protocol]
        call = lambda: codec.decode_uplink(data, fport)  # TS013: errors come back in Decoded.errors
    try:
        call()
    except CodecError:
        pass
    except Exception as exc:
        raise Failure(f"codec {protocol} fport {fport} payload {data[:64].hex()}: {type(exc).__name__}: {exc}"[:500]) \
            from exc


codec_names = st.sampled_from(["json", "ul", *CODECS])


@dataclass(frozen=True)
class Target:
    """A named fuzz target: a hypothesis strategy of argument tuples and the function taking them."""

    name: str
    strategy: st.SearchStrategy[tuple[Any, ...]]
    run: Callable[..., None]


IN_PROCESS = [
    Target("q-language", st.tuples(q_text), q_target),
    Target("geo-query", st.tuples(georel, geometry, _coordinates, st.booleans()), geo_target),
    Target("temporal-params", st.tuples(temporal_params, st.booleans()), temporal_target),
    Target("payload-codecs", st.tuples(codec_names, payload, st.integers(0, 255)), codec_target),
]
