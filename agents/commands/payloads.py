"""Command payloads as devices read and write them, in JSON and in Ultralight 2.0.

    to the device     JSON  {"reboot": 1}                       (iotagent-json commandHandler.js:75-112)
                      UL    <device_id>@reboot|1                (iotagent-ul lib/ulParser.js:288-320)
    from the device   JSON  {"reboot": "done"}                  (cmdexe; iotagent-json commandHandler.js:193-212)
                      UL    <device_id>@reboot|done

A value that is an object is sent as it is in JSON; in Ultralight its members
become `key=value` pairs joined by `|`, as iotagent-ul writes them.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["CommandPayloadError", "command_payload", "command_results"]


class CommandPayloadError(ValueError):
    """A device's answer to a command that cannot be read."""


def _ul_value(value: Any) -> str:
    if isinstance(value, dict):
        return "|".join(f"{k}={_ul_value(v)}" for k, v in value.items())
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def command_payload(protocol: str, device_id: str, name: str, value: Any) -> tuple[bytes, str]:
    """(body, media type) of one command for a device speaking `protocol` ("json" or "ul")."""
    if protocol == "ul":
        return f"{device_id}@{name}|{_ul_value(value)}".encode(), "text/plain"
    return orjson.dumps({name: value}), "application/json"


def command_results(protocol: str, device_id: str, payload: bytes) -> dict[str, Any]:
    """The results a device sends back, by command name."""
    if protocol == "ul":
        results: dict[str, Any] = {}
        for line in payload.decode("utf-8", errors="replace").strip().splitlines():
            head, sep, result = line.strip().partition("|")
            device, at, name = head.partition("@")
            if not sep or not at or not name:
                raise CommandPayloadError(f"{line!r} is not '<device>@<command>|<result>'")
            if device != device_id:
                raise CommandPayloadError(f"{line!r} answers for device {device!r}, not {device_id!r}")
            results[name] = result
        if not results:
            raise CommandPayloadError("an empty command answer")
        return results
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandPayloadError(f"the command answer is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise CommandPayloadError("a command answer is a JSON object {\"<command>\": <result>}")
    return doc
