"""Cayenne LPP: `channel (1 B) + type (1 B) + value`, repeated; every standard IPSO type of the specification.

The types, sizes, resolutions and signedness are those of the Cayenne LPP
specification (myDevices, "Cayenne Low Power Payload"; IPSO object id - 3200),
all values big-endian:

    type  IPSO  name                  size  resolution
    0     3200  digital input         1     1, unsigned
    1     3201  digital output        1     1, unsigned
    2     3202  analog input          2     0.01, signed
    3     3203  analog output         2     0.01, signed
    101   3301  illuminance           2     1 lux, unsigned
    102   3302  presence              1     1, unsigned
    103   3303  temperature           2     0.1 degC, signed
    104   3304  humidity              1     0.5 %, unsigned
    113   3313  accelerometer         6     0.001 G per axis, signed
    115   3315  barometer             2     0.1 hPa, unsigned
    134   3334  gyrometer             6     0.01 deg/s per axis, signed
    136   3336  GPS location          9     latitude, longitude 0.0001 deg, altitude 0.01 m, signed, 3 B each

Readings are named as The Things Stack names them: the lower-case sensor
constant and the channel (`temperature_3`, `barometric_pressure_0`). The Things
Stack computes in float32 (27.200000762939453); this computes in float64 and
rounds to the type's resolution (27.2).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from agents.lorawan.catalog import Codec
from agents.lorawan.contract import PayloadError, Reader, uplink_decoder
from agents.lorawan.units import CEL, HPA, LUX, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile


def _axes(scale: float, digits: int) -> Callable[[Reader], dict[str, float]]:
    def read(r: Reader) -> dict[str, float]:
        return {axis: round(r.i16be(axis) * scale, digits) for axis in ("x", "y", "z")}
    return read


def _gps(r: Reader) -> dict[str, float]:
    return {"latitude": round(r.i24be("latitude") * 0.0001, 4), "longitude": round(r.i24be("longitude") * 0.0001, 4),
            "altitude": round(r.i24be("altitude") * 0.01, 2)}


#: LPP type -> (reading name, reader)
TYPES: dict[int, tuple[str, Callable[[Reader], Any]]] = {
    0: ("digital_input", lambda r: r.u8("digital input")),
    1: ("digital_output", lambda r: r.u8("digital output")),
    2: ("analog_input", lambda r: round(r.i16be("analog input") * 0.01, 2)),
    3: ("analog_output", lambda r: round(r.i16be("analog output") * 0.01, 2)),
    101: ("luminosity", lambda r: r.u16be("illuminance")),
    102: ("presence", lambda r: r.u8("presence")),
    103: ("temperature", lambda r: round(r.i16be("temperature") * 0.1, 1)),
    104: ("relative_humidity", lambda r: r.u8("humidity") * 0.5),
    113: ("accelerometer", _axes(0.001, 3)),
    115: ("barometric_pressure", lambda r: round(r.u16be("barometric pressure") * 0.1, 1)),
    134: ("gyrometer", _axes(0.01, 2)),
    136: ("gps", _gps),
}


@uplink_decoder
def decode_uplink(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
    """The readings of a Cayenne LPP payload, named `<type>_<channel>`."""
    if not 1 <= fport <= 223:
        raise PayloadError(f"unknown FPort {fport}: application data is on FPort 1..223")
    r = Reader(payload)
    data: dict[str, Any] = {}
    while r.remaining:
        at = r.pos
        channel = r.u8("channel")
        kind = r.u8("type")
        if kind not in TYPES:
            raise PayloadError(f"unknown Cayenne LPP type {kind} on channel {channel} at offset {at}")
        name, read = TYPES[kind]
        key = f"{name}_{channel}"
        if key in data:
            warnings.append(f"{key} sent twice; the last value is kept")
        data[key] = read(r)
    return data


_NOT_ENVIRONMENT = "a generic input or output: what it measures is the integrator's to say (provision an attribute)"

CODEC = Codec(
    id="cayenne/lpp",
    vendor="Cayenne",
    model="LPP",
    description="Cayenne Low Power Payload (any device or firmware that speaks it)",
    documents=(
        "https://docs.mydevices.com/docs/lorawan/cayenne-lpp",
        "https://www.thethingsindustries.com/docs/integrations/payload-formatters/cayenne/",
    ),
    decode_uplink=decode_uplink,
    profiles=(Profile("WeatherObserved", "dataModel.Weather", (
        M("temperature", "temperature", CEL, controlled_property="temperature"),
        M("relative_humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
        M("barometric_pressure", "atmosphericPressure", HPA, controlled_property="atmosphericPressure"),
        M("luminosity", "illuminance", LUX, controlled_property="light"),
    )),),
    not_forwarded=MappingProxyType({
        "digital_input": _NOT_ENVIRONMENT, "digital_output": _NOT_ENVIRONMENT,
        "analog_input": _NOT_ENVIRONMENT, "analog_output": _NOT_ENVIRONMENT,
        "presence": "occupancy, not an environmental reading",
        "accelerometer": "motion of the device, not of the weather",
        "gyrometer": "rotation of the device, not of the weather",
        "gps": "a position: the device's location is provisioned as its GeoProperty",
    }),
)
