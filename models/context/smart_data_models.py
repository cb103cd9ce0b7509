"""The Smart Data Models @contexts the platform uses, written here as term lists.

The FIWARE Smart Data Models publish one @context per subject (terms expand
to `https://smartdatamodels.org/dataModel.<Subject>/<term>`, shared place and
provenance terms to `https://smartdatamodels.org/<term>`) and one for all
subjects at `https://smartdatamodels.org/context.jsonld`, whose terms expand
to other IRIs (mostly `https://uri.fiware.org/ns/data-models#<term>` and
`https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/<term>`).
The same short name therefore means different attributes under the two
families: an entity must be read with the context it was written with.

The documents are built from the tuples below rather than shipped as files,
so that a reviewer sees the vocabulary the platform speaks. Every term of the
published documents is kept, including those of models the platform does not
use: a URL names a whole document, and a partial copy would silently expand
the missing terms to the default vocabulary, unlike every other broker.
The all-subjects list (1,527 terms) is generated into `sdm_all_terms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from models.context import sdm_all_terms

SDM_BASE: Final = "https://smartdatamodels.org/"
SDM_ALL_CONTEXT_URL: Final = "https://smartdatamodels.org/context.jsonld"
"""The all-subjects context, the default @context of the FIWARE IoT agents."""

_GEOJSON = "https://purl.org/geojson/vocab#"
_NGSI_LD = "https://uri.etsi.org/ngsi-ld/"

# Definitions the per-subject contexts repeat from the NGSI-LD core context (same IRIs).
_NGSI_LD_DEFINITIONS: Final[dict[str, Any]] = {
    "bbox": {"@container": "@list", "@id": _GEOJSON + "bbox"},
    "coordinates": {"@container": "@list", "@id": _GEOJSON + "coordinates"},
    "data": _NGSI_LD + "data",
    "description": "http://purl.org/dc/terms/description",
    "id": "@id",
    "location": _NGSI_LD + "location",
    "ngsi-ld": _NGSI_LD,
    "status": _NGSI_LD + "status",
    "success": {"@id": _NGSI_LD + "success", "@type": "@id"},
    "type": "@type",
    "value": _NGSI_LD + "hasValue",
}
_CORE_ALIASES = ("bbox", "coordinates", "description", "id", "location", "ngsi-ld", "type")

# Place and provenance terms of the common schema, under https://smartdatamodels.org/<term>.
_COMMON_TERMS: Final[tuple[str, ...]] = (
    "address", "addressCountry", "addressLocality", "addressRegion", "alternateName", "areaServed",
    "dataProvider", "dateCreated", "dateModified", "dateObserved", "district", "name", "owner",
    "postOfficeBoxNumber", "postalCode", "seeAlso", "source", "streetAddress", "streetNr",
)
_MEASUREMENT_COMMON_TERMS: Final = ("instValue", "maxOverTime", "minOverTime", "validFrom")
_DEVICE_COMMON_TERMS: Final = ("annotations", "color", "image")


ENVIRONMENT_TERMS: Final[tuple[str, ...]] = (
    "AeroAllergenObserved", "AirQualityForecast", "AirQualityMonitoring", "AirQualityObserved",
    "CO2eq", "CarbonFootprint", "ElectroMagneticObserved", "EnvironmentObserved", "FloodMonitoring",
    "IndoorEnvironmentObserved", "LANight", "LAS", "LAeq", "LAeq2", "LAeq_d", "LAmax", "LAmax2",
    "Laeq2", "Lamax2", "MosquitoDensity", "NightSkyQuality", "NoiseLevelObserved", "NoisePollution",
    "NoisePollutionForecast", "PhreaticObserved", "RFID", "RainFallRadarObserved",
    "TrafficEnvironmentImpact", "TrafficEnvironmentImpactForecast", "WaterObserved",
    "airQualityIndex", "airQualityLevel", "airQualityObserved", "airTemperature",
    "airTemperatureTSA", "alertLevel", "allergenRisk", "ambientNoiseTSA", "ambientTemperature",
    "aqiMajorPollutant", "arsenicTSA", "as", "atmosphericPressure", "atmosphericPressureTSA",
    "averageValue", "averageVehicleSpeedExpected", "bapTSA", "battery", "batteryLevel",
    "benzeneTSA", "brandName", "buildingsType", "c6h6", "cd", "cellsSize", "charge", "clouds", "co",
    "co2", "co2TSA", "coLevel", "coTSA", "comments", "currentLevel", "dangerLevel",
    "dataDescriptor", "dateIssued", "dateObservedFrom", "dateObservedTo", "depth",
    "deviceBatteryStatus", "deviceID", "deviceId", "deviceInfo", "deviceList", "deviceModel",
    "deviceName", "deviceSimNumber", "deviceStatus", "distanceAverage", "eMF", "emissionDate",
    "emissionSource", "endDateTime", "feelsLikeTemperature", "femaleSpeciesCount", "femaleTotal",
    "floodLevelStatus", "flow", "groundType", "gustSpeed", "height", "heightAverage", "illuminance",
    "intensityExpected", "investigationDepth", "isMobile", "maleSpeciesCount", "maleTotal",
    "manufacturerName", "mapScale", "measurand", "measuredArea", "measuredDistance",
    "measurementType", "modelName", "modelURL", "mosquitoDensity", "mosquitoSpecies", "nh3TSA",
    "ni", "nickelTSA", "no", "no2", "no2TSA", "noTSA", "noiseAnnoyanceIndex", "noiseOrigin", "nox",
    "numberOfCol", "numberOfRow", "o2TSA", "o3", "o3TSA", "objectArea", "objectHeightAverage",
    "objectHeightMax", "objectVolume", "observationDateTime", "obstacles", "occupancyExpected",
    "pb", "pbTSA", "peopleCount", "pm1", "pm10", "pm10TSA", "pm25", "pm25TSA", "pm4",
    "pointOfInterest", "pollutionRate", "precipitation", "pressure", "rainFallRadarContent",
    "refDevice", "refPointOfInterest", "refTrafficFlowObserved", "refWeatherObserved",
    "referenceLevel", "relatedSource", "relativeHumidity", "relativeHumidityTSA", "reliability",
    "residueLevel", "rfID", "sensorHeight", "sensorPlacement", "sh2", "sigmaMagnitude",
    "skyMagnitude", "skyTemperature", "so2", "so2TSA", "solarRadiation", "sonometerClass",
    "speciesName", "speciesTotal", "startDateTime", "stationID", "swellDirection", "swellHeight",
    "swellPeriod", "tags", "temperature", "totalSpeciesCount", "tpc", "traffic", "tsp",
    "typeofLocation", "uvTSA", "validTo", "validity", "vehicleClass", "versionInfo", "versionName",
    "visibility", "volatileOrganicCompoundsTotal", "wallsType", "waterDischarge", "waterLevel",
    "waterQualityObserved", "waterTable", "waveLength", "weatherObserved", "weatherType",
    "windDirection", "windSpeed", "windType"
)

WEATHER_TERMS: Final[tuple[str, ...]] = (
    "SeaConditions", "WeatherAlert", "WeatherForecast", "WeatherObserved", "airQualityIndex",
    "airQualityIndexForecast", "airTemperatureForecast", "airTemperatureTSA", "alertSource",
    "aqiMajorPollutant", "aqiMajorPollutantForecast", "atmosphericPressure", "averageValue",
    "category", "dateIssued", "dateRetrieved", "dayMaximum", "dayMinimum", "dewPoint",
    "diffuseIrradiation", "directIrradiation", "feelLikesTemperature", "feelsLikeTemperature",
    "gustSpeed", "illuminance", "pH", "precipitation", "precipitationForecast",
    "precipitationProbability", "pressureTendency", "refDevice", "refPointOfInterest",
    "relativeHumidity", "relativeHumidityForecast", "salinity", "severity", "snowHeight",
    "solarRadiation", "streamGauge", "subCategory", "surfaceTemperature", "temperature",
    "uVIndexMax", "validTo", "validity", "visibility", "waveHeight", "waveLevel", "wavePeriod",
    "weatherType", "windDirection", "windSpeed"
)

DEVICE_TERMS: Final[tuple[str, ...]] = (
    "Camera", "Device", "DeviceMeasurement", "DeviceModel", "DeviceOperation", "Modbus", "PolarH10",
    "PrivacyObject", "SenseHat", "SmartMeteringObservation", "UWBAnchor", "acc", "accelerometer",
    "addressedAt", "anchorData", "anchorId", "annotatedMap", "batteryLevel", "blinkIndex",
    "brandName", "cameraName", "cameraNum", "cameraOrientation", "cameraType", "cameraUsage",
    "category", "clientId", "comments", "configuration", "controlledAsset", "controlledProperty",
    "crossborderTransfer", "dateFirstUsed", "dateInstalled", "dateLastCalibration",
    "dateLastValueReported", "dateManufactured", "depth", "device", "deviceCategory", "deviceClass",
    "deviceId", "deviceState", "deviceType", "direction", "distance", "documentation", "dstAware",
    "ecg", "endDateTime", "endedAt", "energyLimitationClass", "entityVersion", "firmwareVersion",
    "floor", "function", "hardwareVersion", "hr", "hrv", "humidity", "imageSnapshot", "ipAddress",
    "isIndoor", "isPersonalData", "latency", "legitimateInterest", "macAddress", "manufacturerName",
    "mcc", "measurementType", "mediaURL", "memoryAddress", "meterType", "metrics", "mnc",
    "modelName", "moving", "numValue", "offPeakConsumption", "on", "operationType", "operator",
    "osVersion", "outlier", "parameter", "peakConsumption", "plannedEndAt", "plannedStartAt",
    "powerFactor", "pressure", "primaryTable", "protocolId", "provider", "purpose", "raspSn",
    "rates", "recipientList", "refDevice", "refDeviceModel", "relativePosition", "reportedAt",
    "result", "retentionPeriod", "rr", "rss", "rssi", "sampleRate", "sensorTimeStamp",
    "serialNumber", "sessionId", "softwareVersion", "startDateTime", "startedAt", "streamName",
    "streamURL", "supportedProtocol", "supportedUnits", "tagData", "tagId", "temperature",
    "textValue", "timeStamp", "timestamp", "totalConsumption", "transactionId", "unit", "unitId",
    "update", "user", "version", "x", "y", "z", "zones"
)

@dataclass(frozen=True)
class SubjectContext:
    """The @context of one Smart Data Models subject (a `dataModel.<Subject>` repository)."""

    subject: str
    terms: tuple[str, ...]
    """Terms expanding to `https://smartdatamodels.org/<subject>/<term>`."""
    common_terms: tuple[str, ...]
    """Terms expanding to `https://smartdatamodels.org/<term>`."""
    ngsi_ld_terms: tuple[str, ...]
    """Terms repeated from the NGSI-LD core context."""

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs the subject's context is published at (all answered from this object)."""
        return (
            f"https://raw.githubusercontent.com/smart-data-models/{self.subject}/master/context.jsonld",
            f"https://raw.githubusercontent.com/smart-data-models/{self.subject}/main/context.jsonld",
            f"https://smart-data-models.github.io/{self.subject}/context.jsonld",
            f"{SDM_BASE}{self.subject}/context.jsonld",
        )

    def document(self) -> dict[str, Any]:
        """The context document, terms sorted as in the published file."""
        definitions: dict[str, Any] = {t: f"{SDM_BASE}{self.subject}/{t}" for t in self.terms}
        definitions.update({t: SDM_BASE + t for t in self.common_terms})
        definitions.update({t: _copy(_NGSI_LD_DEFINITIONS[t]) for t in self.ngsi_ld_terms})
        return {"@context": dict(sorted(definitions.items()))}


def _copy(definition: Any) -> Any:
    return dict(definition) if isinstance(definition, dict) else definition


ENVIRONMENT: Final = SubjectContext(
    "dataModel.Environment", ENVIRONMENT_TERMS, _COMMON_TERMS + _MEASUREMENT_COMMON_TERMS, _CORE_ALIASES
)
WEATHER: Final = SubjectContext(
    "dataModel.Weather", WEATHER_TERMS, _COMMON_TERMS + _MEASUREMENT_COMMON_TERMS, (*_CORE_ALIASES, "data")
)
DEVICE: Final = SubjectContext(
    "dataModel.Device",
    DEVICE_TERMS,
    _COMMON_TERMS + _DEVICE_COMMON_TERMS,
    (*_CORE_ALIASES, "data", "status", "success", "value"),
)
SUBJECTS: Final = (ENVIRONMENT, WEATHER, DEVICE)


def all_subjects_document() -> dict[str, Any]:
    """The all-subjects context document of https://smartdatamodels.org/context.jsonld."""
    definitions: dict[str, Any] = {}
    for base, terms in sdm_all_terms.TERMS_BY_BASE.items():
        definitions.update({t: base + t for t in terms})
    definitions.update({t: _copy(d) for t, d in sdm_all_terms.OTHER_DEFINITIONS.items()})
    return {"@context": dict(sorted(definitions.items()))}


_ALL_URLS = (
    SDM_ALL_CONTEXT_URL,
    "https://raw.githubusercontent.com/smart-data-models/data-models/master/context.jsonld",
    "https://smart-data-models.github.io/data-models/context.jsonld",
)


def _url_key(url: str) -> str:
    return "https://" + url[len("http://") :] if url.startswith("http://") else url


_BUILDERS: Final[dict[str, Any]] = {
    **{url: subject.document for subject in SUBJECTS for url in subject.urls},
    **{url: all_subjects_document for url in _ALL_URLS},
}

SHIPPED_URLS: Final = frozenset(_BUILDERS)
"""Every Smart Data Models context URL answered without the network."""


def smart_data_models_document(url: str) -> dict[str, Any] | None:
    """The shipped document for a Smart Data Models context URL (http or https), or None."""
    builder = _BUILDERS.get(_url_key(url))
    return None if builder is None else builder()
