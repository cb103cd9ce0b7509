"""Milesight EM300-TH: temperature and humidity sensor (IP67, outdoor enclosure).

Payload definition from Milesight's EM300-TH README (SensorDecoders,
em-series/em300-th) and the EM300 series user guide: battery 01 75, temperature
03 67 (int16 LE / 10 degC), humidity 04 68 (uint8 / 2 %RH), history 20 CE
(timestamp uint32 LE + temperature + humidity + a reserved byte).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agents.codecs.milesight import BATTERY, HUMIDITY, TEMPERATURE, Channel, decoder, encoder, reboot, report_interval
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import Reader, downlink_encoder, uplink_decoder
from agents.lorawan.units import CEL, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile


def _history(r: Reader) -> dict[str, Any]:
    record = {"timestamp": r.u32le("history timestamp"), "temperature": r.i16le("history temperature") / 10,
              "humidity": r.u8("history humidity") / 2}
    r.u8("history reserved byte")
    return record


CHANNELS = {**BATTERY, **TEMPERATURE, **HUMIDITY, (0x20, 0xCE): Channel("history", _history)}

decode_uplink = uplink_decoder(decoder(CHANNELS, "EM300-TH"))
encode_downlink = downlink_encoder(encoder({"report_interval": report_interval, "reboot": reboot}))

_INFO = "device information sent after joining, not a reading"

CODEC = Codec(
    id="milesight/em300-th",
    vendor="Milesight",
    model="EM300-TH",
    description="Temperature and humidity sensor",
    documents=(
        "https://www.milesight.com/iot/product/lorawan-sensor/em300-th",
        "https://github.com/Milesight-IoT/SensorDecoders/tree/main/em-series/em300-th",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("WeatherObserved", "dataModel.Weather", (
        M("temperature", "temperature", CEL, controlled_property="temperature"),
        M("humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
    )),),
    not_forwarded=MappingProxyType({
        "history": "stored records the device replays on request; each needs its own observedAt (wiring round)",
        **{k: _INFO for k in ("ipso_version", "hardware_version", "firmware_version", "tsl_version", "sn",
                              "lorawan_class", "reset_event", "device_status")},
    }),
    uplink_ports=(85,),
)
