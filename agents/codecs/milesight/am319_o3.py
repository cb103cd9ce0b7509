"""Milesight AM319-O3: ambience monitoring sensor with ozone (PM2.5, PM10, O3, CO2, TVOC, pressure, T/H).

Payload definition from Milesight's AM319-O3 README (SensorDecoders,
am-series/am319-o3) and the AM300 series user guide. Units as the README
gives them: temperature int16 LE / 10 degC, humidity uint8 / 2 %RH, CO2 uint16
ppm, TVOC 08 7D uint16 / 100 (an IAQ level) or 08 E6 uint16 ug/m3, pressure
uint16 / 10 hPa, PM2.5 and PM10 uint16 ug/m3, O3 uint16 / 100 ppm.

Milesight's older AM300 README (AM_Series/AM300) printed the 08 7D TVOC as 37
for the bytes 2500; the current README and decoder divide by 100 (0.37, an IAQ
level): this follows the current one. Its µg/m³ variant (08 E6) is named
`tvoc_concentration` here, not `tvoc` as in Milesight's decoder, so that one
key does not carry two units.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agents.codecs.milesight import BATTERY, HUMIDITY, TEMPERATURE, Channel, decoder, encoder, reboot, report_interval
from agents.lorawan.catalog import Codec
from agents.lorawan.contract import Reader, downlink_encoder, uplink_decoder
from agents.lorawan.units import CEL, GQ, HPA, PPM, percent
from agents.profiles import Measurement as M
from agents.profiles import Profile


def _history(tvoc_iaq: bool) -> Any:
    def read(r: Reader) -> dict[str, Any]:
        record: dict[str, Any] = {"timestamp": r.u32le("history timestamp"),
                                  "temperature": r.i16le("history temperature") / 10,
                                  "humidity": r.u16le("history humidity") / 2,
                                  "pir": "trigger" if r.u8("history pir") else "idle",
                                  "light_level": r.u8("history light level"),
                                  "co2": r.u16le("history co2")}
        tvoc = r.u16le("history tvoc")
        record.update({"tvoc": tvoc / 100} if tvoc_iaq else {"tvoc_concentration": tvoc})
        record.update({"pressure": r.u16le("history pressure") / 10, "pm2_5": r.u16le("history pm2.5"),
                       "pm10": r.u16le("history pm10"), "o3": r.u16le("history o3") / 100})
        return record
    return read


CHANNELS = {
    **BATTERY, **TEMPERATURE, **HUMIDITY,
    (0x05, 0x00): Channel("pir", lambda r: "trigger" if r.u8("pir") else "idle"),
    (0x06, 0xCB): Channel("light_level", lambda r: r.u8("light level")),
    (0x07, 0x7D): Channel("co2", lambda r: r.u16le("co2")),
    (0x08, 0x7D): Channel("tvoc", lambda r: r.u16le("tvoc") / 100),
    (0x08, 0xE6): Channel("tvoc_concentration", lambda r: r.u16le("tvoc")),
    (0x09, 0x73): Channel("pressure", lambda r: r.u16le("pressure") / 10),
    (0x0B, 0x7D): Channel("pm2_5", lambda r: r.u16le("pm2.5")),
    (0x0C, 0x7D): Channel("pm10", lambda r: r.u16le("pm10")),
    (0x0D, 0x7D): Channel("o3", lambda r: r.u16le("o3") / 100),
    (0x0E, 0x01): Channel("buzzer_status", lambda r: "on" if r.u8("buzzer") else "off"),
    (0x20, 0xCE): Channel("history", _history(True)),
    (0x21, 0xCE): Channel("history", _history(False)),
}

decode_uplink = uplink_decoder(decoder(CHANNELS, "AM319-O3"))
encode_downlink = downlink_encoder(encoder({"report_interval": report_interval, "reboot": reboot}))

_INFO = "device information sent after joining, not a reading"

CODEC = Codec(
    id="milesight/am319-o3",
    vendor="Milesight",
    model="AM319-O3",
    description="Ambience monitoring sensor: PM2.5, PM10, O3, CO2, TVOC, pressure, temperature, humidity",
    documents=(
        "https://www.milesight.com/iot/product/lorawan-sensor/am319",
        "https://github.com/Milesight-IoT/SensorDecoders/tree/main/am-series/am319-o3",
    ),
    decode_uplink=decode_uplink,
    encode_downlink=encode_downlink,
    profiles=(Profile("AirQualityObserved", "dataModel.Environment", (
        M("pm2_5", "pm25", GQ, controlled_property="airPollution"),
        M("pm10", "pm10", GQ, controlled_property="airPollution"),
        M("o3", "o3", PPM, controlled_property="airPollution"),
        M("co2", "co2", PPM, controlled_property="airPollution"),
        M("tvoc_concentration", "volatileOrganicCompoundsTotal", GQ, controlled_property="airPollution"),
        M("temperature", "temperature", CEL, controlled_property="temperature"),
        M("humidity", "relativeHumidity", None, percent, controlled_property="humidity"),
        M("pressure", "pressure", HPA, controlled_property="atmosphericPressure"),
    )),),
    not_forwarded=MappingProxyType({
        "tvoc": "an indoor air quality level (IAQ), not a concentration: no Smart Data Model attribute",
        "pir": "occupancy (motion), not an air quality reading",
        "light_level": "a light level index 0-5, not illuminance in lux",
        "buzzer_status": "the device's buzzer state",
        "history": "stored records the device replays on request; each needs its own observedAt (wiring round)",
        **{k: _INFO for k in ("ipso_version", "hardware_version", "firmware_version", "tsl_version", "sn",
                              "lorawan_class", "reset_event", "device_status")},
    }),
    uplink_ports=(85,),
)
