"""Decentlab's generic uplink format (protocol version 2), shared by every Decentlab device, and its downlinks.

Uplink, as Decentlab documents it for every model (the product pages' "payload
format" and the decoders it publishes, e.g. github.com/decentlab/decentlab-decoders):

    byte 0      protocol version, 2
    bytes 1-2   device id, uint16 big-endian
    bytes 3-4   flags, uint16 big-endian: bit i set = sensor i's words follow, in sensor order
    then        for each flagged sensor, `length` uint16 big-endian words, converted by the model's formulas

Decentlab's decoders read whatever is there (a short frame gives NaN); here the
length must be exactly what the flags announce, and a flag for a sensor the
model does not have is an error.

Downlink (Decentlab "downlink command encoder", downlink-command-encoder.html in
the same repository): command uint16 + parameter uint16 + CRC-16/MODBUS
(polynomial 0xA001 reflected, initial 0xFFFF) of those four bytes, all
big-endian, on FPort 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from agents.lorawan.contract import PayloadError, Reader, integer

PROTOCOL_VERSION = 2
DOWNLINK_PORT = 1

Convert = Callable[[tuple[int, ...]], float]


class Sensor(NamedTuple):
    """One sensor of a model: how many words it sends and the readings computed from them."""

    length: int
    values: tuple[tuple[str, Convert], ...]


def decoder(sensors: tuple[Sensor, ...], model: str) -> Callable[[bytes, int, list[str]], dict[str, Any]]:
    """The TS013 body of a Decentlab model with these sensors (wrap it with uplink_decoder)."""

    def decode(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
        # FPort 1 by default; Decentlab's "set port" command moves it anywhere in 1..223.
        if not 1 <= fport <= 223:
            raise PayloadError(f"unknown FPort {fport}: Decentlab devices send on FPort 1..223 (default 1)")
        r = Reader(payload)
        version = r.u8("protocol version")
        if version != PROTOCOL_VERSION:
            raise PayloadError(f"protocol version {version} is not Decentlab's version {PROTOCOL_VERSION}")
        data: dict[str, Any] = {"protocol_version": version, "device_id": r.u16be("device id")}
        flags = r.u16be("flags")
        if flags >> len(sensors):
            raise PayloadError(f"flags 0x{flags:04x} name a sensor the {model} does not have "
                               f"(it has {len(sensors)})")
        if not flags:
            raise PayloadError("flags are 0: no sensor reading in the payload")
        for i, sensor in enumerate(sensors):
            if flags >> i & 1:
                words = tuple(r.u16be(f"sensor {i} word {j}") for j in range(sensor.length))
                for name, convert in sensor.values:
                    data[name] = convert(words)
        r.expect_end(f"the {flags.bit_count()} flagged sensor(s)")
        return data

    return decode


# -- downlinks --------------------------------------------------------------------------------------------

#: Decentlab's downlink commands that a city operator uses (name -> command code, parameter range or None).
COMMANDS: Mapping[str, tuple[int, tuple[int, int] | None]] = {
    "set period": (0x0001, (1, 65535)),  # sampling period, seconds
    "set period + save": (0x0002, (1, 65535)),
    "set send_period": (0x0011, (0, 65535)),  # send after every n-th sampling
    "set send_period + save": (0x0012, (0, 65535)),
    "set join_period": (0x0013, (0, 1000)),  # re-join every n hours, 0 never
    "set join_period + save": (0x0014, (0, 1000)),
    "set adr on": (0x0005, None),
    "set adr off": (0x0007, None),
    "reset": (0xFEFE, None),
}


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (reflected polynomial 0xA001, initial 0xFFFF), as Decentlab's encoder computes it."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def encode(command: Mapping[str, Any], warnings: list[str]) -> tuple[int, bytes]:
    """`{"command": "set period", "parameter": 600}` -> FPort 1 and command + parameter + CRC."""
    name = command.get("command")
    if not isinstance(name, str) or name not in COMMANDS:
        raise PayloadError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    code, bounds = COMMANDS[name]
    parameter = 0 if bounds is None else integer(command, "parameter", *bounds)
    body = code.to_bytes(2, "big") + parameter.to_bytes(2, "big")
    return DOWNLINK_PORT, body + crc16_modbus(body).to_bytes(2, "big")
