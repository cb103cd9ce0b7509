"""WeatherObserved (dataModel.Weather): temperature, humidity, pressure, wind, rain, light."""

from agents.profiles.measurement import Measurement as M
from agents.profiles.measurement import Profile, percent_to_fraction

PROFILE = Profile(
    model="WeatherObserved",
    subject="dataModel.Weather",
    measurements=(
        M("t", "temperature", "CEL", aliases=("temp",), controlled_property="temperature"),
        M("h", "relativeHumidity", None, percent_to_fraction, aliases=("humidity", "hum", "rh"), controlled_property="humidity"),
        M("p", "atmosphericPressure", "A97", aliases=("pressure", "pres"), controlled_property="atmosphericPressure"),
        M("ws", "windSpeed", "MTS", aliases=("wind_speed",), controlled_property="windSpeed"),
        M("wd", "windDirection", "DD", aliases=("wind_direction",), controlled_property="windDirection"),
        M("gust", "gustSpeed", "MTS", aliases=("gust_speed",), controlled_property="windSpeed"),
        M("rain", "precipitation", "MMT", aliases=("precip",), controlled_property="precipitation"),
        M("lux", "illuminance", "LUX", aliases=("light",), controlled_property="light"),
        M("dew", "dewPoint", "CEL", aliases=("dew_point",), controlled_property="temperature"),
        M("solar", "solarRadiation", "D54", aliases=("irradiance",), controlled_property="solarRadiation"),
    ),
)
