"""Milesight WS302: sound level sensor (class-2-style A/C/Z weighting, fast/slow/impulse time weighting).

Payload definition from Milesight's WS302 README (SensorDecoders,
ws-series/ws302) and the WS302 user guide: battery 01 75; sound level 05 5B =
weighting byte (bits 0-1 frequency weighting 0 Z, 1 A, 2 C; bits 2-3 time
weighting 0 I, 1 F, 2 S) + L, Leq, Lmax as uint16 LE / 10 dB. The readings are
named as Milesight names them: `L<f><t>`, `L<f>eq`, `L<f><t>max` (LAF, LAeq, LAFmax).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agents.codecs.milesight import BATTERY, Channel, decoder, encoder, reboot
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import PayloadError, Reader, downlink_encoder, uplink_decoder
from agents.lorawan.units import DB
from agents.profiles import Measurement as M
from agents.profiles import Profile

FREQUENCY = {0: "Z", 1: "A", 2: "C"}
TIME = {0: "I", 1: "F", 2: "S"}


def _sound(r: Reader) -> dict[str, float]:
    weight = r.u8("sound weighting")
    f, t = FREQUENCY.get(weight & 0x03), TIME.get(weight >> 2 & 0x03)
    if f is None or t is None:
        raise PayloadError(f"sound weighting byte 0x{weight:02X} names no documented weighting")
    return {f"L{f}{t}": r.u16le("sound level") / 10, f"L{f}eq": r.u16le("Leq") / 10,
            f"L{f}{t}max": r.u16le("Lmax") / 10}


def _decode_body() -> Any:
    body = decoder({**BATTERY, (0x05, 0x5B): Channel("sound", _sound)}, "WS302")

    def decode(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
        data = body(payload, fport, warnings)
        sound = data.pop("sound", None)
        return {**data, **sound} if sound else data

    return decode


def weighting(command: Mapping[str, Any]) -> bytes:
    """`weighting: {"frequency": "A", "time": "F"}`: FF 1D + frequency + time (the WS302 encoder)."""
    value = command["weighting"]
    chosen = value if isinstance(value, Mapping) else {}
    freq = {v: k for k, v in FREQUENCY.items()}.get(str(chosen.get("frequency")))
    time = {v: k for k, v in TIME.items()}.get(str(chosen.get("time")))
    if freq is None or time is None:
        raise PayloadError('weighting must be {"frequency": "Z"|"A"|"C", "time": "I"|"F"|"S"}')
    return bytes((0xFF, 0x1D, freq, time))


decode_uplink = uplink_decoder(_decode_body())
encode_downlink = downlink_encoder(encoder({"weighting": weighting, "reboot": reboot}))

_INFO = "device information sent after joining, not a reading"
_WEIGHTED = "NoiseLevelObserved has A-weighted levels only (LAeq, LAmax, LAS)"

CODEC = Codec(
    id="milesight/ws302",
    vendor="Milesight",
    model="WS302",
    description="Sound level sensor",
    documents=(
        "https://www.milesight.com/iot/product/lorawan-sensor/ws302",
        "https://github.com/Milesight-IoT/SensorDecoders/tree/main/ws-series/ws302",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("NoiseLevelObserved", "dataModel.Environment", (
        M("LAeq", "LAeq", DB, controlled_property="noiseLevel"),
        M("LAFmax", "LAmax", DB, aliases=("LASmax", "LAImax"), controlled_property="noiseLevel"),
        M("LAS", "LAS", DB, controlled_property="noiseLevel"),
    )),),
    not_forwarded=MappingProxyType({
        "LAF": "the fast-weighted level: NoiseLevelObserved has the slow one (LAS) only",
        "LAI": "the impulse-weighted level: NoiseLevelObserved has the slow one (LAS) only",
        **{f"L{f}{t}{m}": _WEIGHTED for f in "CZ" for t in "IFS" for m in ("", "max")},
        **{f"L{f}eq": _WEIGHTED for f in "CZ"},
        **{k: _INFO for k in ("ipso_version", "hardware_version", "firmware_version", "tsl_version", "sn",
                              "lorawan_class", "reset_event", "device_status")},
    }),
    uplink_ports=(85,),
)
