"""Dragino LHT65: temperature and humidity sensor (built-in SHT20) with an optional external probe.

Uplink as the LHT65 user manual documents it (section "Uplink Payload"; also
the TTN device repository vendor/dragino/lht65.js): FPort 2, 11 bytes,

    0-1   BAT: bits 15-14 battery status (0 ultra low .. 3 good), bits 13-0 voltage in mV
    2-3   built-in temperature, int16 BE / 100 degC
    4-5   built-in humidity, uint16 BE (12 bits) / 10 %RH
    6     bits 0-3 external sensor type, bit 6 poll-message flag, bit 7 "sensor not connected"
    7-10  external sensor data (type 1: temperature int16 BE / 100 degC, then 7FFF)

Dragino's decoder returns nothing at all for a payload that is not 11 bytes or
is a datalog poll reply; here those are errors with the reason. External types
other than 0 (none), 1 (temperature probe), 5 (illuminance) and 6 (ADC) are
reported as a warning and their four bytes left undecoded.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agents.codecs.dragino import encode
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import PayloadError, Reader, downlink_encoder, unknown_port, uplink_decoder
from agents.lorawan.units import CEL, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile

PORT = 2
EXTERNAL = {0: "No external sensor", 1: "Temperature Sensor", 5: "Illumination Sensor", 6: "ADC Sensor"}


@uplink_decoder
def decode_uplink(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
    """The LHT65 periodic uplink."""
    if fport != PORT:
        raise unknown_port(fport, (PORT,))
    if len(payload) != 11:
        raise PayloadError(f"payload is {len(payload)} bytes; the LHT65 uplink is 11")
    r = Reader(payload)
    bat = r.u16be("BAT")
    data: dict[str, Any] = {"BatV": (bat & 0x3FFF) / 1000, "Bat_status": bat >> 14,
                            "TempC_SHT": r.i16be("built-in temperature") / 100,
                            "Hum_SHT": (r.u16be("built-in humidity") & 0x0FFF) / 10}
    ext = r.u8("external sensor byte")
    if ext & 0x40:
        raise PayloadError("a datalog poll reply (flag 0x40), not a periodic uplink: not decoded")
    kind = ext & 0x0F
    if ext & 0x80:
        warnings.append("the external sensor is not connected")
    if kind in EXTERNAL:
        data["Ext_sensor"] = EXTERNAL[kind]
    else:
        warnings.append(f"external sensor type {kind} is not decoded")
    if kind == 1:
        data["TempC_DS"] = r.i16be("external temperature") / 100
    elif kind == 5:
        data["ILL_lx"] = r.u16be("illuminance")
    elif kind == 6:
        data["ADC_V"] = r.u16be("ADC") / 1000
    return data


encode_downlink = downlink_encoder(encode)

CODEC = Codec(
    id="dragino/lht65",
    vendor="Dragino",
    model="LHT65",
    description="Temperature and humidity sensor with external probe connector",
    documents=(
        "https://www.dragino.com/products/temperature-humidity-sensor/item/151-lht65.html",
        "https://github.com/TheThingsNetwork/lorawan-devices/blob/master/vendor/dragino/lht65.js",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("WeatherObserved", "dataModel.Weather", (
        M("TempC_SHT", "temperature", CEL, controlled_property="temperature"),
        M("Hum_SHT", "relativeHumidity", None, percent, controlled_property="humidity"),
        M("ILL_lx", "illuminance", "LUX", controlled_property="light"),
    )),),
    not_forwarded=MappingProxyType({
        "BatV": "a voltage: the Device model has batteryLevel (0-1) and no voltage attribute",
        "Bat_status": "a 4-step battery state (0 ultra low .. 3 good), not a level",
        "Ext_sensor": "the name of the external sensor type, not a reading",
        "TempC_DS": "the external probe's temperature: where the probe sits is the integrator's to say "
                    "(provision an attribute for it)",
        "ADC_V": "a raw analogue input voltage: its meaning depends on what is wired to it",
    }),
    uplink_ports=(PORT,),
)
