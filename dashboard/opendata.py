"""Open data: every indicator and the hourly measures as CSV and GeoJSON, described in DCAT-AP.

Data sets are declared in `DATASETS` (one entry each: which entities, which
attributes, which columns); one function reads any of them from the broker's
history over a period and writes it as CSV (UTF-8, comma, header row, ISO
8601 dates, as data.gouv.fr's guidance for tabular data asks) or as a GeoJSON
FeatureCollection (a Point per row: the town's centre or the sensor's
place). `catalog()` describes them in DCAT-AP (JSON-LD), the profile the
national portal harvests, under the Licence Ouverte 2.0 (Etalab).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from dashboard.source import BrokerSource
from indicators.compute import MEASURED
from indicators.entities import HEAT_TYPE
from indicators.timebase import PARIS, hourly_means, iso, local_at, local_day
from indicators.towns import town_of, towns

LICENCE = "https://www.etalab.gouv.fr/licence-ouverte-open-licence/"
Row = dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    """One downloadable data set: its name, titles, description, and how its rows are read."""

    name: str
    title_fr: str
    title_en: str
    description_fr: str
    columns: tuple[str, ...]
    rows: Callable[[BrokerSource, datetime, datetime], list[Row]]
    periodicity: str = "DAILY"


def _indicator_rows(entity_type: str, indicator: str, scope: str, attrs: tuple[str, ...],
                    shape: Callable[[dict[str, Any], datetime, dict[str, Any]], Row],
                    daily: bool = True) -> Callable[[BrokerSource, datetime, datetime], list[Row]]:
    def read(source: BrokerSource, start: datetime, end: datetime) -> list[Row]:
        out: list[Row] = []
        for entity in sorted(source.indicators(entity_type, indicator, scope), key=lambda e: e["id"]):
            series = (source.daily if daily else source.history)(entity["id"], list(attrs), start, end)
            times = sorted({t for values in series.values() for t, _ in values})
            by = {a: dict(v) for a, v in series.items()}
            for t in times:
                out.append(shape(entity, t, {a: by.get(a, {}).get(t) for a in attrs}))
        return out
    return read


def _place(entity: dict[str, Any]) -> Row:
    location = entity.get("location") or {}
    lon, lat = (location.get("coordinates") or [None, None])[:2]
    row: Row = {"code_insee": entity.get("townCode"), "commune": entity.get("areaServed")}
    if entity.get("indicatorPlace") == "sensor":
        row["capteur"] = entity.get("refSensor")
    row["longitude"], row["latitude"] = lon, lat
    return row


def _atmo(entity: dict[str, Any], t: datetime, v: dict[str, Any]) -> Row:
    subs = v.get("subIndices") or {}
    return {"date": local_day(t).isoformat(), **_place(entity), "indice": v.get("airQualityIndex"),
            "qualificatif": v.get("airQualityLevel"), **{f"sous_indice_{p}": subs.get(p) for p in ("pm25", "pm10", "no2", "o3", "so2")},
            "provisoire": v.get("provisional")}


def _eaqi(entity: dict[str, Any], t: datetime, v: dict[str, Any]) -> Row:
    return {"heure_utc": iso(t), **_place(entity), "indice": v.get("airQualityIndex"), "qualificatif": v.get("airQualityLevel")}


def _noise(entity: dict[str, Any], t: datetime, v: dict[str, Any]) -> Row:
    return {"date": local_day(t).isoformat(), **_place(entity), **{k: v.get(k) for k in ("Lday", "Levening", "Lnight", "Lden")},
            "provisoire": v.get("provisional")}


def _heat(entity: dict[str, Any], t: datetime, v: dict[str, Any]) -> Row:
    return {"date": local_day(t).isoformat(), **_place(entity), "tn": v.get("minTemperature"), "tmoy": v.get("meanTemperature"),
            "tx": v.get("maxTemperature"), "nuit_tropicale": v.get("tropicalNight"), "jour_canicule": v.get("heatWaveDay"),
            "provisoire": v.get("provisional")}


def _measures(source: BrokerSource, start: datetime, end: datetime) -> list[Row]:
    out: list[Row] = []
    for entity in sorted(source.sensors(), key=lambda e: e["id"]):
        location = entity.get("location") or {}
        coords = location.get("coordinates") if location.get("type") == "Point" else None
        if not coords:
            continue
        town = town_of(float(coords[0]), float(coords[1]))
        attrs = [a for a in MEASURED if a in entity]
        series = source.history(entity["id"], attrs, start, end)
        for attr in attrs:
            values = [(t, float(x)) for t, x in series.get(attr, []) if isinstance(x, (int, float))]
            for hour, mean in hourly_means(values).items():
                out.append({"heure_utc": iso(hour), "capteur": entity["id"], "code_insee": town.insee if town else None,
                            "commune": town.name if town else None, "longitude": coords[0], "latitude": coords[1],
                            "grandeur": attr, "valeur": round(mean, 2)})
    return out


_ATMO_COLUMNS = ("date", "code_insee", "commune", "longitude", "latitude", "indice", "qualificatif", "sous_indice_pm25",
                 "sous_indice_pm10", "sous_indice_no2", "sous_indice_o3", "sous_indice_so2", "provisoire")
_ATMO_ATTRS = ("airQualityIndex", "airQualityLevel", "subIndices", "provisional")
_HEAT_ATTRS = ("minTemperature", "meanTemperature", "maxTemperature", "tropicalNight", "heatWaveDay", "provisional")
_HEAT_COLUMNS = ("date", "code_insee", "commune", "longitude", "latitude", "tn", "tmoy", "tx", "nuit_tropicale",
                 "jour_canicule", "provisoire")

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("indice-atmo-communes", "Indice ATMO quotidien par commune", "Daily ATMO index by town",
            "Indice ATMO (arrêté du 10 juillet 2020) de chaque commune pilote et chaque jour, avec ses sous-indices.",
            _ATMO_COLUMNS, _indicator_rows("AirQualityObserved", "atmo", "town", _ATMO_ATTRS, _atmo)),
    Dataset("indice-atmo-capteurs", "Indice ATMO quotidien par station", "Daily ATMO index by station",
            "Indice ATMO de chaque station de mesure de l'air et chaque jour.",
            (*_ATMO_COLUMNS[:3], "capteur", *_ATMO_COLUMNS[3:]),
            _indicator_rows("AirQualityObserved", "atmo", "sensor", _ATMO_ATTRS, _atmo)),
    Dataset("indice-europeen-communes", "Indice européen de qualité de l'air horaire par commune",
            "Hourly European Air Quality Index by town",
            "Indice européen de qualité de l'air (AEE, révision 2024), chaque heure, pour chaque commune pilote.",
            ("heure_utc", "code_insee", "commune", "longitude", "latitude", "indice", "qualificatif"),
            _indicator_rows("AirQualityObserved", "eaqi", "town", ("airQualityIndex", "airQualityLevel"), _eaqi, daily=False),
            "HOURLY"),
    Dataset("bruit-capteurs", "Indicateurs de bruit quotidiens (Lden, Lnight) par capteur",
            "Daily noise indicators (Lden, Lnight) by sensor",
            "Lday (6h-18h), Levening (18h-22h), Lnight (22h-6h) et Lden en dB(A) de chaque sonomètre et chaque jour.",
            ("date", "code_insee", "commune", "capteur", "longitude", "latitude", "Lday", "Levening", "Lnight", "Lden", "provisoire"),
            _indicator_rows("NoiseLevelObserved", "noise", "sensor", ("Lday", "Levening", "Lnight", "Lden", "provisional"),
                           _noise)),
    Dataset("chaleur-communes", "Indicateurs de chaleur quotidiens par commune", "Daily heat indicators by town",
            "Températures minimale, moyenne et maximale, nuits tropicales et jours de canicule de chaque commune pilote.",
            _HEAT_COLUMNS, _indicator_rows(HEAT_TYPE, "heat", "town", _HEAT_ATTRS, _heat)),
    Dataset("chaleur-capteurs", "Indicateurs de chaleur quotidiens par capteur", "Daily heat indicators by sensor",
            "Températures minimale, moyenne et maximale, nuits tropicales et jours de canicule de chaque capteur.",
            (*_HEAT_COLUMNS[:3], "capteur", *_HEAT_COLUMNS[3:]), _indicator_rows(HEAT_TYPE, "heat", "sensor", _HEAT_ATTRS, _heat)),
    Dataset("mesures-horaires", "Mesures horaires des capteurs", "Hourly sensor measures",
            "Moyenne horaire de chaque grandeur mesurée par chaque capteur (µg/m³, dB(A) en moyenne arithmétique des "
            "échantillons, °C).",
            ("heure_utc", "capteur", "code_insee", "commune", "longitude", "latitude", "grandeur", "valeur"), _measures, "HOURLY"),
)}


def to_csv(dataset: Dataset, rows: list[Row]) -> str:
    """The rows as CSV text with the data set's columns."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dataset.columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v) for k, v in row.items()})
    return buffer.getvalue()


def to_geojson(dataset: Dataset, rows: list[Row]) -> bytes:
    """The rows as a GeoJSON FeatureCollection (a Point per row)."""
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [r.get("longitude"), r.get("latitude")]}
                 if r.get("longitude") is not None else None,
                 "properties": {k: r.get(k) for k in dataset.columns if k not in ("longitude", "latitude")}} for r in rows]
    return orjson.dumps({"type": "FeatureCollection", "name": dataset.name, "features": features})


def catalog(base_url: str, first: date, last: date) -> dict[str, Any]:
    """The DCAT-AP description of every data set (JSON-LD)."""
    base = base_url.rstrip("/")
    bbox = [min(c[0] for t in towns() for c in t.outline.exterior.coords), min(c[1] for t in towns() for c in t.outline.exterior.coords),
            max(c[0] for t in towns() for c in t.outline.exterior.coords), max(c[1] for t in towns() for c in t.outline.exterior.coords)]
    spatial = {"@type": "dct:Location", "locn:geometry": {
        "@value": orjson.dumps({"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                                                                    [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]}).decode(),
        "@type": "https://www.iana.org/assignments/media-types/application/vnd.geo+json"}}
    publisher = {"@type": "foaf:Organization", "foaf:name": "Métropole d'Aix-Marseille-Provence"}
    datasets = []
    for d in DATASETS.values():
        distributions = [{
            "@id": f"{base}/donnees/{d.name}.{ext}", "@type": "dcat:Distribution",
            "dct:title": f"{d.title_fr} ({ext.upper()})", "dcat:accessURL": {"@id": f"{base}/donnees/{d.name}.{ext}"},
            "dcat:downloadURL": {"@id": f"{base}/donnees/{d.name}.{ext}"}, "dcat:mediaType": {"@id": f"http://www.iana.org/assignments/media-types/{media}"},
            "dct:format": {"@id": f"http://publications.europa.eu/resource/authority/file-type/{fmt}"},
            "dct:license": {"@id": LICENCE}} for ext, media, fmt in (("csv", "text/csv", "CSV"), ("geojson", "application/geo+json", "GEOJSON"))]
        datasets.append({
            "@id": f"{base}/donnees/{d.name}", "@type": "dcat:Dataset", "dct:identifier": d.name,
            "dct:title": [{"@value": d.title_fr, "@language": "fr"}, {"@value": d.title_en, "@language": "en"}],
            "dct:description": {"@value": d.description_fr, "@language": "fr"},
            "dcat:keyword": ["qualité de l'air", "bruit", "chaleur", "indicateurs", "Aix-Marseille-Provence"],
            "dcat:theme": {"@id": "http://publications.europa.eu/resource/authority/data-theme/ENVI"},
            "dct:publisher": publisher, "dct:license": {"@id": LICENCE}, "dct:spatial": spatial,
            "dct:temporal": {"@type": "dct:PeriodOfTime", "dcat:startDate": {"@value": first.isoformat(), "@type": "xsd:date"},
                             "dcat:endDate": {"@value": last.isoformat(), "@type": "xsd:date"}},
            "dct:accrualPeriodicity": {"@id": f"http://publications.europa.eu/resource/authority/frequency/{d.periodicity}"},
            "dcat:contactPoint": {"@type": "vcard:Organization", "vcard:fn": "Métropole d'Aix-Marseille-Provence, données ouvertes"},
            "dcat:distribution": distributions})
    return {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/", "foaf": "http://xmlns.com/foaf/0.1/",
                     "vcard": "http://www.w3.org/2006/vcard/ns#", "locn": "http://www.w3.org/ns/locn#",
                     "xsd": "http://www.w3.org/2001/XMLSchema#"},
        "@id": f"{base}/donnees/catalogue.jsonld", "@type": "dcat:Catalog",
        "dct:title": [{"@value": "Indicateurs de qualité de vie de la Métropole", "@language": "fr"},
                      {"@value": "Metropolis quality-of-life indicators", "@language": "en"}],
        "dct:description": {"@value": "Indicateurs air, bruit et chaleur des communes pilotes et mesures horaires des capteurs.",
                            "@language": "fr"},
        "dct:publisher": publisher, "dct:license": {"@id": LICENCE}, "dct:language": {"@id": "http://publications.europa.eu/resource/authority/language/FRA"},
        "dcat:dataset": datasets}


def period(start: str | None, end: str | None, default_days: int, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a download from `from`/`to` (local dates, inclusive) or the last `default_days` days."""
    last = date.fromisoformat(end) if end else local_day(now)
    first = date.fromisoformat(start) if start else date.fromordinal(last.toordinal() - default_days)
    return local_at(first, 0), min(local_at(last, 24), now.astimezone(PARIS))
