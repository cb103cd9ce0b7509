"""Decentlab DL-SHT35: air temperature and humidity sensor with radiation shield.

Formulas from Decentlab's DL-SHT35 documentation (product page "payload
format"; reference decoders decentlab-decoders DL-SHT35 and the TTN device
repository vendor/decentlab/dl-sht35.js). Sensor order: SHT35 (2 words), battery.
"""

from __future__ import annotations

from types import MappingProxyType

from agents.codecs.decentlab import Sensor, decoder, encode
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import downlink_encoder, uplink_decoder
from agents.lorawan.units import CEL, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile

SENSORS = (
    Sensor(2, (
        ("air_temperature", lambda x: 175 * x[0] / 65535 - 45),
        ("air_humidity", lambda x: 100 * x[1] / 65535),
    )),
    Sensor(1, (("battery_voltage", lambda x: x[0] / 1000),)),
)

decode_uplink = uplink_decoder(decoder(SENSORS, "DL-SHT35"))
encode_downlink = downlink_encoder(encode)

CODEC = Codec(
    id="decentlab/dl-sht35",
    vendor="Decentlab",
    model="DL-SHT35",
    description="Air temperature and humidity sensor with radiation shield",
    documents=(
        "https://www.decentlab.com/products/air-temperature-and-humidity-sensor-with-radiation-shield-for-lorawan",
        "https://github.com/decentlab/decentlab-decoders/tree/master/DL-SHT35",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("WeatherObserved", "dataModel.Weather", (
        M("air_temperature", "temperature", CEL, controlled_property="temperature"),
        M("air_humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
    )),),
    not_forwarded=MappingProxyType({
        "protocol_version": "Decentlab's frame format version, not a reading",
        "device_id": "Decentlab's own device number; the platform names the device by its DevEUI",
        "battery_voltage": "a voltage: the Device model has batteryLevel (0-1) and no voltage attribute",
    }),
    uplink_ports=(1,),
)
