"""Dragino devices (LHT65 family): one module per model; what they share is the downlink format.

Dragino's user manuals ("Set Transmit Interval Time", AT+TDC) document the
transmit interval downlink as 0x01 followed by the interval in seconds on
three bytes, big-endian (0100001E = 30 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.lorawan.contract import PayloadError, integer

DOWNLINK_PORT = 2


def encode(command: Mapping[str, Any], warnings: list[str]) -> tuple[int, bytes]:
    """`{"transmit_interval": seconds}` -> 01 + uint24 BE."""
    unknown = [k for k in command if k != "transmit_interval"]
    if unknown or not command:
        raise PayloadError(f"unknown command(s) {', '.join(map(repr, unknown)) or '(none)'}; known: transmit_interval")
    seconds = integer(command, "transmit_interval", 1, 0xFFFFFF)
    return DOWNLINK_PORT, b"\x01" + seconds.to_bytes(3, "big")
