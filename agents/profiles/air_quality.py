"""AirQualityObserved (dataModel.Environment): pollutant concentrations and the weather beside them."""

from agents.profiles.measurement import Measurement as M
from agents.profiles.measurement import Profile, percent_to_fraction

GQ = "GQ"  # microgram per cubic metre

PROFILE = Profile(
    model="AirQualityObserved",
    subject="dataModel.Environment",
    measurements=(
        M("no2", "no2", GQ, aliases=("NO2",), controlled_property="airPollution"),
        M("no", "no", GQ, aliases=("NO",), controlled_property="airPollution"),
        M("nox", "nox", GQ, aliases=("NOx", "NOX"), controlled_property="airPollution"),
        M("o3", "o3", GQ, aliases=("O3", "ozone"), controlled_property="airPollution"),
        M("so2", "so2", GQ, aliases=("SO2",), controlled_property="airPollution"),
        M("co", "co", "GP", aliases=("CO",), controlled_property="airPollution"),  # milligram per cubic metre
        M("pm10", "pm10", GQ, aliases=("PM10", "pm_10"), controlled_property="airPollution"),
        M("pm25", "pm25", GQ, aliases=("PM25", "pm2_5", "pm2.5", "PM2.5", "pm_25"), controlled_property="airPollution"),
        M("pm1", "pm1", GQ, aliases=("PM1", "pm1_0"), controlled_property="airPollution"),
        M("co2", "co2", "59", aliases=("CO2",), controlled_property="airPollution"),  # ppm
        M("t", "temperature", "CEL", aliases=("temp",), controlled_property="temperature"),
        M("h", "relativeHumidity", None, percent_to_fraction, aliases=("humidity", "hum", "rh"), controlled_property="humidity"),
        M("p", "pressure", "A97", aliases=("pres",), controlled_property="atmosphericPressure"),  # hectopascal
        M("ws", "windSpeed", "MTS", aliases=("wind_speed",), controlled_property="windSpeed"),
        M("wd", "windDirection", "DD", aliases=("wind_direction",), controlled_property="windDirection"),
    ),
)
