"""Elsys' common payload format: a sequence of `type (1 B) + data` readings, big-endian, for every ERS/ELT/EMS device.

The types and sizes are those of Elsys' payload document ("Elsys LoRaWAN
payload", elsys.se, and the vendor decoder in the TTN device repository
vendor/elsys/elsys.js). Elsys' decoder ends the loop silently at an unknown
type; here it is an error (the type's length is unknown, so what follows
cannot be read), and a reading cut short is an error too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agents.lorawan.contract import PayloadError, Reader

Read = Callable[[Reader], dict[str, Any]]

#: type -> its readings (Elsys' names), for the types the payload document defines
TYPES: Mapping[int, Read] = {
    0x01: lambda r: {"temperature": r.i16be("temperature") / 10},  # degC
    0x02: lambda r: {"humidity": r.u8("humidity")},  # %RH
    0x03: lambda r: {"x": r.i8("acc x"), "y": r.i8("acc y"), "z": r.i8("acc z")},  # +-63 = 1 g
    0x04: lambda r: {"light": r.u16be("light")},  # lux
    0x05: lambda r: {"motion": r.u8("motion")},  # PIR count
    0x06: lambda r: {"co2": r.u16be("co2")},  # ppm
    0x07: lambda r: {"vdd": r.u16be("vdd")},  # mV
    0x08: lambda r: {"analog1": r.u16be("analog1")},  # mV
    0x09: lambda r: {"lat": r.u24be("gps lat"), "long": r.u24be("gps long")},  # binary, as Elsys sends it
    0x0A: lambda r: {"pulse1": r.u16be("pulse1")},
    0x0B: lambda r: {"pulseAbs": r.u32be("pulse1 absolute")},
    0x0C: lambda r: {"externalTemperature": r.i16be("external temperature") / 10},
    0x0D: lambda r: {"digital": r.u8("digital")},
    0x0E: lambda r: {"distance": r.u16be("distance")},  # mm
    0x0F: lambda r: {"accMotion": r.u8("acc motion")},
    0x10: lambda r: {"irInternalTemperature": r.i16be("ir internal") / 10,
                     "irExternalTemperature": r.i16be("ir external") / 10},
    0x11: lambda r: {"occupancy": r.u8("occupancy")},
    0x12: lambda r: {"waterleak": r.u8("waterleak")},
    0x14: lambda r: {"pressure": r.u32be("pressure") / 1000},  # hPa
    0x15: lambda r: {"soundPeak": r.u8("sound peak"), "soundAvg": r.u8("sound average")},  # dB
    0x16: lambda r: {"pulse2": r.u16be("pulse2")},
    0x17: lambda r: {"pulseAbs2": r.u32be("pulse2 absolute")},
    0x18: lambda r: {"analog2": r.u16be("analog2")},  # mV
    0x19: lambda r: {"externalTemperature2": r.i16be("external temperature 2") / 10},
    0x1A: lambda r: {"digital2": r.u8("digital2")},
    0x1B: lambda r: {"analogUv": r.i32be("analog uV")},
    0x1C: lambda r: {"tvoc": r.u16be("tvoc")},  # ppb
}


def decode(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
    """The TS013 body of every Elsys sensor (wrap it with uplink_decoder)."""
    if not 1 <= fport <= 223:
        raise PayloadError(f"unknown FPort {fport}: Elsys sensors send data on an application port 1..223")
    r = Reader(payload)
    data: dict[str, Any] = {}
    while r.remaining:
        at = r.pos
        kind = r.u8("type")
        read = TYPES.get(kind)
        if read is None:
            raise PayloadError(f"unknown type 0x{kind:02X} at offset {at}: not in Elsys' payload document")
        for key, value in read(r).items():
            if key in data:
                warnings.append(f"{key} sent twice; the last value is kept")
            data[key] = value
    return data
