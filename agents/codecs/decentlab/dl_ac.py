"""Decentlab DL-AC: air quality station, NO2, NO, CO and Ox (Alphasense electrochemical cells), temperature, humidity.

Formulas from Decentlab's DL-AC documentation (product page "air quality
station NO2 NO CO Ox for LoRaWAN" and its reference decoders, decentlab-decoders
DL-AC). Each cell sends its working-electrode (we) and auxiliary-electrode
corrected (we-aux) voltages; a concentration is (mV - zero offsets) / sensitivity,
with offsets and sensitivity from the calibration sheet that ships with each
device. :data:`EXAMPLE_CALIBRATION` is the sheet of Decentlab's published example;
:func:`decoder_for` builds the decoder of a device's own sheet (the wiring round
reads it from provisioning), and the default codec warns that it uses the example.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agents.codecs.decentlab import Sensor, decoder, encode
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import UplinkDecoder, downlink_encoder, uplink_decoder
from agents.lorawan.units import CEL, PPB, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile

#: The calibration of Decentlab's published DL-AC example (zero offsets in mV, sensitivities in mV/ppb).
EXAMPLE_CALIBRATION: Mapping[str, float] = MappingProxyType({
    "NO2_WE_0": 256, "NO2_S": 0.256, "NO2_AUX_0": 227,
    "NO_WE_0": 320, "NO_S": 0.512, "NO_AUX_0": 288,
    "Ox_WE_0": 235, "Ox_S": 0.345, "Ox_AUX_0": 200,
    "CO_WE_0": 544, "CO_S": 0.424, "CO_AUX_0": 301,
})
EXAMPLE_WARNING = "concentrations computed with Decentlab's example calibration, not this device's sheet"


def _mv(word: int) -> float:
    return 3 * (word / 32768 - 1) * 1000


def _cell(channel: str, gas: str, cal: Mapping[str, float]) -> Sensor:
    we0, s, aux0 = cal[f"{gas}_WE_0"], cal[f"{gas}_S"], cal[f"{gas}_AUX_0"]
    key = f"{channel}_{gas.lower()}"
    return Sensor(2, (
        (f"{key}_we", lambda x: _mv(x[0])),
        (f"{key}_we_aux", lambda x: _mv(x[1])),
        (f"{key}_concentration_we", lambda x: (_mv(x[0]) - we0) / s),
        (f"{key}_concentration_we_aux", lambda x: (_mv(x[1]) - we0 + aux0) / s),
    ))


def sensors(cal: Mapping[str, float]) -> tuple[Sensor, ...]:
    """The DL-AC's sensors, in flag order, for one calibration sheet."""
    return (
        Sensor(2, (
            ("air_temperature", lambda x: 175.72 * x[0] / 65536 - 46.85),
            ("air_humidity", lambda x: 125 * x[1] / 65536 - 6),
        )),
        _cell("ch4", "NO2", cal), _cell("ch5", "NO", cal), _cell("ch6", "Ox", cal), _cell("ch7", "CO", cal),
        Sensor(1, (("battery_voltage", lambda x: x[0] / 1000),)),
    )


def decoder_for(cal: Mapping[str, float]) -> UplinkDecoder:
    """The TS013 decoder of a DL-AC with this calibration sheet (keys as in EXAMPLE_CALIBRATION)."""
    missing = sorted(EXAMPLE_CALIBRATION.keys() - cal.keys())
    if missing:
        raise ValueError(f"DL-AC calibration lacks {', '.join(missing)}")
    body = decoder(sensors(cal), "DL-AC")
    example = dict(cal) == dict(EXAMPLE_CALIBRATION)

    def decode(payload: bytes, fport: int, warnings: list[str]) -> dict[str, Any]:
        data = body(payload, fport, warnings)
        if example and any(k.endswith("_concentration_we_aux") for k in data):
            warnings.append(EXAMPLE_WARNING)
        return data

    return uplink_decoder(decode)


decode_uplink = decoder_for(EXAMPLE_CALIBRATION)
encode_downlink = downlink_encoder(encode)

_RAW = "an electrode voltage (mV), the raw input of the concentration"
_UNCORRECTED = "the concentration without the auxiliary-electrode correction; the we-aux one is sent"

CODEC = Codec(
    id="decentlab/dl-ac",
    vendor="Decentlab",
    model="DL-AC",
    description="Air quality station: NO2, NO, CO, Ox, air temperature and humidity",
    documents=(
        "https://www.decentlab.com/products/air-quality-station-no2-no-co-ox-for-lorawan",
        "https://github.com/decentlab/decentlab-decoders/tree/master/DL-AC",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("AirQualityObserved", "dataModel.Environment", (
        M("ch4_no2_concentration_we_aux", "no2", PPB, controlled_property="airPollution"),
        M("ch5_no_concentration_we_aux", "no", PPB, controlled_property="airPollution"),
        M("ch7_co_concentration_we_aux", "co", PPB, controlled_property="airPollution"),
        M("air_temperature", "temperature", CEL, controlled_property="temperature"),
        M("air_humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
    )),),
    not_forwarded=MappingProxyType({
        "protocol_version": "Decentlab's frame format version, not a reading",
        "device_id": "Decentlab's own device number; the platform names the device by its DevEUI",
        "battery_voltage": "a voltage: the Device model has batteryLevel (0-1) and no voltage attribute",
        "ch6_ox_concentration_we_aux": "Ox is O3 and NO2 together; AirQualityObserved has no oxidant attribute "
                                       "(o3 = Ox - NO2 is the indicators' business, with both calibrated)",
        **{f"{c}_{g}_{k}": _RAW for c, g in (("ch4", "no2"), ("ch5", "no"), ("ch6", "ox"), ("ch7", "co"))
           for k in ("we", "we_aux")},
        **{f"{c}_{g}_concentration_we": _UNCORRECTED
           for c, g in (("ch4", "no2"), ("ch5", "no"), ("ch6", "ox"), ("ch7", "co"))},
    }),
    uplink_ports=(1,),
)
