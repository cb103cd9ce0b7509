"""Ultralight 2.0 measures, as iotagent-ul reads them.

    t|23|h|45                             one group: {"t": "23", "h": "45"}
    t|23#t|24                             two groups separated by '#'
    2016-06-13T00:35:30Z|t|23             a group prefixed by its timestamp -> "TimeInstant"

Values stay text (Ultralight is untyped); the provisioned attribute type casts
them later. Keys `id` and `type` become `measure_id` / `measure_type`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.codecs import CodecError, rename_reserved

__all__ = ["decode", "decode_value"]


def _is_timestamp(text: str) -> bool:
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _group(text: str, index: int) -> dict[str, Any]:
    body = text.strip()
    body = body.removeprefix("|")
    if not body:
        raise CodecError(f"measure group {index} is empty")
    fields = [f.strip() for f in body.split("|")]
    measure: dict[str, Any] = {}
    if len(fields) % 2 == 1:
        if not _is_timestamp(fields[0]):
            raise CodecError(f"measure group {index} ({body!r}) has a key without a value")
        measure["TimeInstant"] = fields[0]
        fields = fields[1:]
        if not fields:
            raise CodecError(f"measure group {index} has a timestamp and no measure")
    for k in range(0, len(fields), 2):
        key, value = fields[k], fields[k + 1]
        if not key:
            raise CodecError(f"measure group {index} ({body!r}) has an empty key")
        if value == "":
            raise CodecError(f"measure group {index} ({body!r}) has an empty value for {key!r}")
        measure[key] = value
    return rename_reserved(measure)


def decode(payload: bytes) -> list[dict[str, Any]]:
    """The measure groups of an Ultralight 2.0 payload, in order."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("payload is not UTF-8 text") from None
    text = text.strip()
    if not text:
        raise CodecError("empty payload")
    return [_group(g, i) for i, g in enumerate(text.split("#"))]


def decode_value(payload: bytes) -> Any:
    """The bare value of a single-attribute message (text)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CodecError("payload is not UTF-8 text") from None
    if not text:
        raise CodecError("empty payload")
    return text
