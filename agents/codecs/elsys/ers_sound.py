"""Elsys ERS Sound: indoor/sheltered sound level sensor with temperature, humidity, light and motion.

Elsys' common payload format (see agents.codecs.elsys): the ERS Sound sends
temperature (01), humidity (02), light (04), motion (05), sound (15: peak and
average dB(A) of the period) and supply voltage (07).
"""

from __future__ import annotations

from types import MappingProxyType

from agents.codecs.elsys import decode
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import uplink_decoder
from agents.lorawan.units import CEL, DB, LUX, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile

decode_uplink = uplink_decoder(decode)

CODEC = Codec(
    id="elsys/ers-sound",
    vendor="Elsys",
    model="ERS Sound",
    description="Sound level sensor with temperature, humidity, light and motion",
    documents=(
        "https://www.elsys.se/en/ers-sound/",
        "https://www.elsys.se/en/elsys-payload/",
        "https://github.com/TheThingsNetwork/lorawan-devices/blob/master/vendor/elsys/elsys.js",
    ),
    decode_uplink=decode_uplink,
    profiles=(
        Profile("NoiseLevelObserved", "dataModel.Environment", (
            M("soundAvg", "LAeq", DB, controlled_property="noiseLevel"),
            M("soundPeak", "LAmax", DB, controlled_property="noiseLevel"),
        )),
        Profile("WeatherObserved", "dataModel.Weather", (
            M("temperature", "temperature", CEL, controlled_property="temperature"),
            M("humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
            M("light", "illuminance", LUX, controlled_property="light"),
        )),
    ),
    not_forwarded=MappingProxyType({
        "motion": "a count of PIR detections (occupancy), not an environmental reading",
        "vdd": "a supply voltage: the Device model has batteryLevel (0-1) and no voltage attribute",
    }),
    uplink_ports=(),
)
