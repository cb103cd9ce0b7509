"""The iotagent-json payload: one JSON object of measures, or an array of them (multi-measure).

    {"t": 21.5, "h": 40}                  one measure group
    [{"t": 21.5}, {"t": 21.7}]            two groups, delivered in order
    [{"t": 21.5}]                         one group (the FIWARE agent would make an attribute "0")

Keys `id` and `type` become `measure_id` / `measure_type`. A single-attribute
topic (`/<apikey>/<device>/attrs/<name>`) carries one bare value: see
:func:`decode_value`.
"""

from __future__ import annotations

from typing import Any

import orjson

from agents.codecs import CodecError, rename_reserved

__all__ = ["decode", "decode_value"]


def _parse(payload: bytes) -> Any:
    if not payload.strip():
        raise CodecError("empty payload")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"invalid JSON: {exc}") from None


def decode(payload: bytes) -> list[dict[str, Any]]:
    """The measure groups of a JSON payload, in order."""
    doc = _parse(payload)
    groups = doc if isinstance(doc, list) else [doc]
    if not groups:
        raise CodecError("empty array: no measure")
    out: list[dict[str, Any]] = []
    for i, group in enumerate(groups):
        where = f"item {i}" if isinstance(doc, list) else "payload"
        if not isinstance(group, dict):
            raise CodecError(f"{where} is a JSON {type(group).__name__}, not an object of measures")
        if not group:
            raise CodecError(f"{where} is an empty object: no measure")
        out.append(rename_reserved(group))
    return out


def decode_value(payload: bytes) -> Any:
    """The bare value of a single-attribute message: JSON if it parses, else the text."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("payload is not UTF-8 text") from None
    if not text.strip():
        raise CodecError("empty payload")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return text.strip()
