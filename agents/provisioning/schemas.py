"""Validation of provisioning bodies: what iotagent-node-lib's templates require, WRONG_SYNTAX otherwise."""

from __future__ import annotations

from typing import Any

from agents.provisioning.errors import WrongSyntax

_ATTRIBUTE_LISTS = ("attributes", "lazy", "commands")
_STRING_FIELDS_GROUP = ("apikey", "resource", "entity_type", "type", "cbroker", "cbHost", "entityNameExp",
                        "expressionLanguage", "trust", "transport", "endpoint", "protocol", "defaultEntityNameConjunction",
                        "mqtt_username", "mqtt_password")
_STRING_FIELDS_DEVICE = ("device_id", "entity_name", "entity_type", "protocol", "transport", "timezone", "apikey",
                         "endpoint", "polling")


def _check_attributes(doc: dict[str, Any], where: str) -> None:
    for key in _ATTRIBUTE_LISTS:
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise WrongSyntax(f"{where}.{key} must be an array")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise WrongSyntax(f"{where}.{key}[{i}] needs a name")
            if "type" in item and not isinstance(item["type"], str):
                raise WrongSyntax(f"{where}.{key}[{i}].type must be a string")
            if "expression" in item and not isinstance(item["expression"], str):
                raise WrongSyntax(f"{where}.{key}[{i}].expression must be a string")
    statics = doc.get("static_attributes")
    if statics is not None:
        if not isinstance(statics, list):
            raise WrongSyntax(f"{where}.static_attributes must be an array")
        for i, item in enumerate(statics):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise WrongSyntax(f"{where}.static_attributes[{i}] needs a name")
    for flag in ("autoprovision", "timestamp"):
        if flag in doc and not isinstance(doc[flag], (bool, type(None))):
            raise WrongSyntax(f"{where}.{flag} must be a boolean")
    if "explicitAttrs" in doc and not isinstance(doc["explicitAttrs"], (bool, str, type(None))):
        raise WrongSyntax(f"{where}.explicitAttrs must be a boolean or a JEXL string")


def _check_strings(doc: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    for name in names:
        if name in doc and doc[name] is not None and not isinstance(doc[name], str):
            raise WrongSyntax(f"{where}.{name} must be a string")


def groups(body: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list) or not body[key]:
        raise WrongSyntax(f"the body needs a non-empty {key!r} array")
    out = []
    for i, g in enumerate(body[key]):
        where = f"{key}[{i}]"
        if not isinstance(g, dict):
            raise WrongSyntax(f"{where} must be an object")
        for required in ("apikey", "resource"):
            if not isinstance(g.get(required), str):
                raise WrongSyntax(f"{where}.{required} is required")
        _check_strings(g, _STRING_FIELDS_GROUP, where)
        _check_attributes(g, where)
        out.append(g)
    return out


def group_update(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WrongSyntax("the body must be an object")
    _check_strings(body, _STRING_FIELDS_GROUP, "group")
    _check_attributes(body, "group")
    return body


def devices(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("devices"), list) or not body["devices"]:
        raise WrongSyntax("the body needs a non-empty 'devices' array")
    out = []
    for i, d in enumerate(body["devices"]):
        where = f"devices[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("device_id"), str) or not d["device_id"]:
            raise WrongSyntax(f"{where}.device_id is required")
        _check_strings(d, _STRING_FIELDS_DEVICE, where)
        _check_attributes(d, where)
        out.append(d)
    return out


def device_update(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WrongSyntax("the body must be an object")
    _check_strings(body, _STRING_FIELDS_DEVICE, "device")
    _check_attributes(body, "device")
    return body
