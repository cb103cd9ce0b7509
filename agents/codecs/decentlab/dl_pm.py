"""Decentlab DL-PM: particulate matter (Sensirion SPS30), air temperature, humidity and barometric pressure.

Formulas from Decentlab's DL-PM documentation (product page "payload format",
and its reference decoders: decentlab-decoders DL-PM, TTN device repository
vendor/decentlab/dl-pm.js). Sensor order: battery, SPS30 (10 words), SHT21-style
temperature/humidity (2 words), barometer (1 word).
"""

from __future__ import annotations

from types import MappingProxyType

from agents.codecs.decentlab import Sensor, decoder, encode
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import downlink_encoder, uplink_decoder
from agents.lorawan.units import CEL, GQ, HPA, pa_to_hpa, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile

SENSORS = (
    Sensor(1, (("battery_voltage", lambda x: x[0] / 1000),)),
    Sensor(10, (
        ("pm1_0_mass_concentration", lambda x: x[0] / 10),
        ("pm2_5_mass_concentration", lambda x: x[1] / 10),
        ("pm4_mass_concentration", lambda x: x[2] / 10),
        ("pm10_mass_concentration", lambda x: x[3] / 10),
        ("typical_particle_size", lambda x: x[4]),  # nm
        ("pm0_5_number_concentration", lambda x: x[5] / 10),  # 1/cm3
        ("pm1_0_number_concentration", lambda x: x[6] / 10),
        ("pm2_5_number_concentration", lambda x: x[7] / 10),
        ("pm4_number_concentration", lambda x: x[8] / 10),
        ("pm10_number_concentration", lambda x: x[9] / 10),
    )),
    Sensor(2, (
        ("air_temperature", lambda x: 175.72 * x[0] / 65536 - 46.85),
        ("air_humidity", lambda x: 125 * x[1] / 65536 - 6),
    )),
    Sensor(1, (("barometric_pressure", lambda x: x[0] * 2),)),  # Pa
)

decode_uplink = uplink_decoder(decoder(SENSORS, "DL-PM"))
encode_downlink = downlink_encoder(encode)

_NUMBER = "a particle number concentration (1/cm3): AirQualityObserved has mass concentrations only"

CODEC = Codec(
    id="decentlab/dl-pm",
    vendor="Decentlab",
    model="DL-PM",
    description="Particulate matter, temperature, humidity and barometric pressure sensor",
    documents=(
        "https://www.decentlab.com/products/particulate-matter-temperature-humidity-and-barometric-pressure-sensor-for-lorawan",
        "https://github.com/decentlab/decentlab-decoders/tree/master/DL-PM",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("AirQualityObserved", "dataModel.Environment", (
        M("pm1_0_mass_concentration", "pm1", GQ, controlled_property="airPollution"),
        M("pm2_5_mass_concentration", "pm25", GQ, controlled_property="airPollution"),
        M("pm4_mass_concentration", "pm4", GQ, controlled_property="airPollution"),
        M("pm10_mass_concentration", "pm10", GQ, controlled_property="airPollution"),
        M("air_temperature", "temperature", CEL, controlled_property="temperature"),
        M("air_humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
        M("barometric_pressure", "pressure", HPA, pa_to_hpa, controlled_property="atmosphericPressure"),
    )),),
    not_forwarded=MappingProxyType({
        "protocol_version": "Decentlab's frame format version, not a reading",
        "device_id": "Decentlab's own device number; the platform names the device by its DevEUI",
        "battery_voltage": "a voltage: the Device model has batteryLevel (0-1) and no voltage attribute",
        "typical_particle_size": "no Smart Data Model attribute for a particle size",
        "pm0_5_number_concentration": _NUMBER,
        "pm1_0_number_concentration": _NUMBER,
        "pm2_5_number_concentration": _NUMBER,
        "pm4_number_concentration": _NUMBER,
        "pm10_number_concentration": _NUMBER,
    }),
    uplink_ports=(1,),
)
