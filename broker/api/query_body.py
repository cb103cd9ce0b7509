"""The shape of a Query body (clause 5.2.23) before anything reads it: POST /entityOperations/query and
POST /temporal/entityOperations/query (issue 17: `q: [null]`, `scopeQ: [null]`, `attrs: [{}]` and
`temporalQ: "x"` were 500s). A member of the wrong JSON type is a BadRequestData naming it.
"""

from __future__ import annotations

from typing import Any

from models.errors import BadRequestData

_STRINGS = ("q", "scopeQ", "lang", "pick", "omit", "datasetId", "join", "containedBy", "aggrPeriodDuration",
            "orderBy")
_GEO_STRINGS = ("georel", "geometry", "geoproperty")
_TEMPORAL_STRINGS = ("timerel", "timeAt", "endTimeAt", "timeproperty", "aggrPeriodDuration")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _string_or_list(value: Any, name: str) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return
    raise BadRequestData(f"{name} must be a string or an array of strings, got {_kind(value)}")


def check_query_body(body: Any, *, temporal: bool = False) -> dict[str, Any]:
    """`body` if it is a Query of the right shape; BadRequestData naming the first wrong member."""
    if not isinstance(body, dict):
        raise BadRequestData(f"the body must be a Query object, got {_kind(body)}")
    entities = body.get("entities")
    if entities is not None:
        if not isinstance(entities, list):
            raise BadRequestData(f"entities must be an array of EntitySelector objects, got {_kind(entities)}")
        for item in entities:
            if not isinstance(item, dict):
                raise BadRequestData("each entities item must be an EntitySelector object")
            if item.get("id") is not None:
                _string_or_list(item["id"], "EntitySelector id")
            for name in ("idPattern", "type"):
                if item.get(name) is not None and not isinstance(item[name], str):
                    raise BadRequestData(f"EntitySelector {name} must be a string, got {_kind(item[name])}")
    for name in _STRINGS:
        if body.get(name) is not None and name in ("pick", "omit", "datasetId", "orderBy"):
            _string_or_list(body[name], name)
        elif body.get(name) is not None and not isinstance(body[name], str):
            raise BadRequestData(f"{name} must be a string, got {_kind(body[name])}")
    if body.get("attrs") is not None:
        if temporal:
            _string_or_list(body["attrs"], "attrs")
        elif not isinstance(body["attrs"], list) or not all(isinstance(a, str) for a in body["attrs"]):
            raise BadRequestData("attrs must be an array of attribute names")
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict):
            raise BadRequestData(f"geoQ must be an object, got {_kind(geo)}")
        for name in _GEO_STRINGS:
            if geo.get(name) is not None and not isinstance(geo[name], str):
                raise BadRequestData(f"geoQ.{name} must be a string, got {_kind(geo[name])}")
        if geo.get("coordinates") is not None and not isinstance(geo["coordinates"], (list, str)):
            raise BadRequestData(f"geoQ.coordinates must be an array, got {_kind(geo['coordinates'])}")
    if body.get("local") is not None and not isinstance(body["local"], bool):
        raise BadRequestData(f"local must be a boolean, got {_kind(body['local'])}")
    if temporal:
        tq = body.get("temporalQ")
        if tq is not None:
            if not isinstance(tq, dict):
                raise BadRequestData(f"temporalQ must be an object, got {_kind(tq)}")
            for name in _TEMPORAL_STRINGS:
                if tq.get(name) is not None and not isinstance(tq[name], str):
                    raise BadRequestData(f"temporalQ.{name} must be a string, got {_kind(tq[name])}")
            if tq.get("lastN") is not None and (not isinstance(tq["lastN"], (int, str)) or isinstance(tq["lastN"],
                                                                                                    bool)):
                raise BadRequestData(f"temporalQ.lastN must be a number, got {_kind(tq['lastN'])}")
        if body.get("lastN") is not None and (not isinstance(body["lastN"], (int, str)) or isinstance(body["lastN"],
                                                                                                      bool)):
            raise BadRequestData(f"lastN must be a number, got {_kind(body['lastN'])}")
        if body.get("aggrMethods") is not None:
            _string_or_list(body["aggrMethods"], "aggrMethods")
    return body
