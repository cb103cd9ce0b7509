"""What the demo devices measure: diurnal cycles and the scenario's events, as pure functions of time.

The scenario plays a summer fortnight on the last days' dates, so every
indicator has something to show whatever the season (a tropical night in
December would never happen): relative to today (day 0, local time),

| days | event |
|---|---|
| -6, -5 | a particle episode over Marseille and Aubagne (PM10 around 65, PM2.5 around 38 µg/m³: ATMO "mauvais") |
| -4 to -1 | a heat wave: tropical nights (Tn 24-25 °C) and Tx 36-37 °C, ozone afternoons up to 150 µg/m³ |
| -2 | a hot night in Marseille: Tn 27 °C |
| the last Saturday | a noisy Saturday night on the Cours Julien (LAeq 70 dB(A) from 22:00 to 03:00) |
| every morning | an SO2 plume at Lavéra (Martigues) from 08:00 to 10:00 |

Values carry a small deterministic jitter (seeded by device and hour).
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime

from demo.fleet import DemoDevice
from indicators.timebase import PARIS

Measure = dict[str, float]

_TOWN = {  # (night offset, day offset °C, traffic factor)
    "Marseille": (0.5, 0.0, 1.4), "Aix-en-Provence": (-2.0, 1.5, 1.1),
    "Martigues": (0.5, -0.5, 0.9), "Aubagne": (0.0, 1.0, 1.0),
}


def _jitter(device: DemoDevice, moment: datetime, scale: float) -> float:
    rng = random.Random(f"{device.device_id}:{int(moment.timestamp() // 600)}")
    return rng.uniform(-scale, scale)


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def day_offset(moment: datetime, today: date) -> int:
    """Days between the moment's local day and today (0 today, -1 yesterday)."""
    return (moment.astimezone(PARIS).date() - today).days


def temperature(device: DemoDevice, moment: datetime, today: date) -> float:
    """°C: a summer cycle (Tn ~19 at 05:00, Tx ~30 at 15:00), hotter in the heat wave, with town offsets."""
    local = moment.astimezone(PARIS)
    hour = local.hour + local.minute / 60
    offset = day_offset(moment, today)
    night, day, _ = _TOWN[device.town]
    tn, tx = 19.0 + night, 30.0 + day
    if -4 <= offset <= -1 or (offset == 0 and hour < 8):
        tn, tx = 24.5 + night / 2, 36.5 + day / 2
    if device.town == "Marseille" and (offset == -2 or (offset == -1 and hour < 8)):
        tn = 27.0
    phase = (math.cos((hour - 15) / 24 * 2 * math.pi) + 1) / 2  # 1 at 15:00, 0 at 03:00
    return round(tn + (tx - tn) * phase + _jitter(device, moment, 0.3), 1)


def air(device: DemoDevice, moment: datetime, today: date) -> Measure:
    """µg/m³ of the five pollutants of the ATMO index, and the temperature the station also reads."""
    local = moment.astimezone(PARIS)
    hour = local.hour + local.minute / 60
    offset = day_offset(moment, today)
    _, _, traffic = _TOWN[device.town]
    rush = _bump(hour, 8.5, 1.5) + 0.8 * _bump(hour, 18.5, 2.0)
    no2 = (18 + 45 * rush) * traffic
    pm10, pm25 = 17 + 6 * rush, 9 + 3 * rush
    heat = -4 <= offset <= -1
    o3 = 45 + (105 if heat else 45) * _bump(hour, 15.5, 3.0)
    so2 = 3.0
    if device.town in ("Marseille", "Aubagne") and offset in (-6, -5):
        pm10, pm25, no2 = pm10 + 48, pm25 + 29, no2 * 1.3
    if device.town == "Martigues":
        so2 += 110 * _bump(hour, 9.0, 0.8)
    return {
        "no2": round(no2 + _jitter(device, moment, 2), 1), "o3": round(o3 + _jitter(device, moment, 3), 1),
        "pm10": round(pm10 + _jitter(device, moment, 1.5), 1), "pm25": round(pm25 + _jitter(device, moment, 1), 1),
        "so2": round(so2 + abs(_jitter(device, moment, 1)), 1), "t": temperature(device, moment, today),
    }


def noise(device: DemoDevice, moment: datetime, today: date) -> Measure:
    """LAeq dB(A): a street's day, evening and night levels; the Saturday night on the Cours Julien."""
    local = moment.astimezone(PARIS)
    hour = local.hour
    base = {"Marseille": 64.0, "Aix-en-Provence": 61.0, "Martigues": 58.0, "Aubagne": 60.0}[device.town]
    level = base if 7 <= hour < 20 else base - 3 if 20 <= hour < 23 else base - 12 if hour < 5 else base - 6
    weekend_night = (local.weekday() == 5 and hour >= 22) or (local.weekday() == 6 and hour < 3)
    if device.device_id == "demo-marseille-cours-julien" and weekend_night and day_offset(moment, today) > -7:
        level = 70.0
    return {"laeq": round(level + _jitter(device, moment, 1.5), 1)}


def weather(device: DemoDevice, moment: datetime, today: date) -> Measure:
    """Temperature and relative humidity (%)."""
    t = temperature(device, moment, today)
    return {"t": t, "h": round(max(20.0, min(95.0, 95 - 1.8 * t + _jitter(device, moment, 3))), 0)}


def measure(device: DemoDevice, moment: datetime, today: date) -> Measure:
    """What the device reads at `moment`."""
    return {"air": air, "noise": noise, "weather": weather}[device.kind](device, moment, today)
