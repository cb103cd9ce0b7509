"""The demo in a browser: indicators for the four towns within a minute, figures equal to the NGSI-LD API,
WCAG 2.1 AA by axe-core, page weight within the budget, screenshots in .screenshots/ (gitignored).

Budget (README, "Public dashboard"): every page, HTML and stylesheet together, at most 60 kB transferred
(compressed), no script, no font, no image file.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from models.context.smart_data_models import SDM_ALL_CONTEXT_URL
from tests.dashboard.conftest import SCREENSHOTS, Demo, wait_for_towns

BUDGET_BYTES = 60_000
LINK = f'<{SDM_ALL_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PAGES = {
    "map-fr": "/", "map-en": "/en/", "town-marseille": "/ville/13055", "town-aix-en": "/en/town/13001",
    "sensor-longchamp": "/capteur/urn:ngsi-ld:AirQualityObserved:demo-marseille-longchamp",
    "sensor-noise-en": "/en/sensor/urn:ngsi-ld:NoiseLevelObserved:demo-marseille-cours-julien",
    "indicators": "/indicateurs", "indicators-en": "/en/indicators", "open-data": "/donnees",
    "report-metropole": "/rapport/metropole/{month}", "report-martigues-en": "/en/report/13056/{month}",
}


def _broker(demo: Demo, entity_id: str) -> dict[str, Any]:
    response = httpx.get(f"{demo.broker}/ngsi-ld/v1/entities/{entity_id}", params={"options": "keyValues"},
                         headers={"NGSILD-Tenant": "metropole", "Link": LINK}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def ready(demo: Demo) -> Demo:
    wait_for_towns(demo, 60)
    return demo


def test_the_demo_shows_indicators_for_the_four_towns_within_a_minute(ready: Demo) -> None:
    towns = httpx.get(f"{ready.dashboard}/api/towns", timeout=10).json()
    assert [t["name"] for t in towns] == ["Marseille", "Aix-en-Provence", "Martigues", "Aubagne"]
    assert all(1 <= t["airQualityIndex"] <= 6 for t in towns)
    assert ready.towns_after is not None and ready.towns_after < 60
    print(f"\nfour towns with an ATMO index {ready.towns_after:.1f} s after `metropole run --demo` started")


def _open(chromium: Any, url: str, name: str, width: int = 1100) -> tuple[Any, int, list[str]]:
    page = chromium.new_page(viewport={"width": width, "height": 900})
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    page.goto(url, wait_until="load")
    weight = 0
    kinds = []
    for response in responses:
        sizes = response.request.sizes()
        weight += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        kinds.append(response.request.resource_type)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    return page, weight, kinds


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_passes_axe_at_wcag_21_aa_and_keeps_to_the_weight_budget(ready: Demo, chromium: Any, name: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    month = httpx.get(f"{ready.dashboard}/api/towns", timeout=10).json()[0]["dateObserved"][:7]
    url = ready.dashboard + PAGES[name].format(month=month)
    page, weight, kinds = _open(chromium, url, name)
    try:
        assert page.title() and page.locator("main h1").count() == 1
        result = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result.response["violations"]]
        assert violations == [], violations
        print(f"\n{name}: {weight} bytes transferred in {len(kinds)} requests ({', '.join(sorted(set(kinds)))})")
        assert weight <= BUDGET_BYTES, f"{name} weighs {weight} bytes (budget {BUDGET_BYTES})"
        assert set(kinds) <= {"document", "stylesheet"}, kinds
    finally:
        page.close()
    phone, _, _ = _open(chromium, url, name, width=390)
    try:  # readable on a phone: nothing wider than the screen but the scrollable tables' own boxes
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        phone.close()


def test_the_map_shows_each_towns_index_as_the_ngsi_ld_api_gives_it(ready: Demo, chromium: Any) -> None:
    page, _, _ = _open(chromium, ready.dashboard + "/", "map-check")
    try:
        api = {t["insee"]: t for t in httpx.get(f"{ready.dashboard}/api/towns", timeout=10).json()}
        for insee in ("13055", "13001", "13056", "13005"):
            before = _broker(ready, f"urn:ngsi-ld:AirQualityObserved:atmo:town:{insee}")["airQualityIndex"]
            shown = int(page.locator(f'tr[data-insee="{insee}"] .badge').get_attribute("data-index") or -1)
            after = _broker(ready, f"urn:ngsi-ld:AirQualityObserved:atmo:town:{insee}")["airQualityIndex"]
            assert shown in (before, after, api[insee]["airQualityIndex"])
            assert page.locator(f'svg.map a[href="/ville/{insee}"]').count() == 1
    finally:
        page.close()


def test_the_town_page_shows_the_index_and_sub_indices_of_the_broker(ready: Demo, chromium: Any) -> None:
    entity_id = "urn:ngsi-ld:AirQualityObserved:atmo:town:13055"
    before = _broker(ready, entity_id)
    page, _, _ = _open(chromium, ready.dashboard + "/ville/13055", "town-check")
    after = _broker(ready, entity_id)
    try:
        shown = int(page.locator("#atmo-today .badge").get_attribute("data-index") or -1)
        assert shown in (before["airQualityIndex"], after["airQualityIndex"])
        rows = page.locator("#sub-indices tbody tr")
        shown_subs = {rows.nth(i).locator("th").inner_text(): int(rows.nth(i).locator(".badge").get_attribute("data-index") or -1)
                      for i in range(rows.count())}
        names = {"pm25": "PM2.5", "pm10": "PM10", "no2": "NO2", "o3": "O3", "so2": "SO2"}
        assert shown_subs in ({names[k]: v for k, v in before["subIndices"].items()},
                              {names[k]: v for k, v in after["subIndices"].items()})
        assert page.locator("svg.chart").count() >= 3  # ATMO days, European index hours, heat, noise
    finally:
        page.close()


def test_the_sensor_page_shows_the_latest_measures_of_the_broker(ready: Demo, chromium: Any) -> None:
    entity_id = "urn:ngsi-ld:AirQualityObserved:demo-marseille-longchamp"
    before = _broker(ready, entity_id)
    page, _, _ = _open(chromium, ready.dashboard + "/capteur/" + entity_id, "sensor-check")
    after = _broker(ready, entity_id)
    try:
        rows = page.locator("#latest tbody tr")
        shown = {rows.nth(i).locator("th").inner_text(): float(rows.nth(i).locator("td").first.inner_text())
                 for i in range(rows.count())}
        assert shown in ({"NO2": before["no2"], "O3": before["o3"], "PM10": before["pm10"], "PM2.5": before["pm25"],
                          "SO2": before["so2"], "T": before["temperature"]},
                         {"NO2": after["no2"], "O3": after["o3"], "PM10": after["pm10"], "PM2.5": after["pm25"],
                          "SO2": after["so2"], "T": after["temperature"]})
        assert page.locator("#hourly tbody tr").count() >= 24 * 3  # at least three days of hourly history
    finally:
        page.close()


def test_the_explanations_show_the_thresholds_the_computations_use(ready: Demo, chromium: Any) -> None:
    page, _, _ = _open(chromium, ready.dashboard + "/indicateurs", "indicators-check")
    try:
        atmo = page.locator("table").first
        no2 = atmo.locator("tbody tr", has_text="NO2").locator("td")
        assert [no2.nth(i).inner_text() for i in range(6)] == ["≤ 40", "40 – 90", "90 – 120", "120 – 230", "230 – 340", "> 340"]
        assert "Légifrance" in page.locator("main").inner_text()
    finally:
        page.close()


def test_open_data_downloads_match_the_indicator_entities_and_the_catalogue_lists_them(ready: Demo) -> None:
    text = httpx.get(f"{ready.dashboard}/donnees/indice-atmo-communes.csv", timeout=30).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["commune"] for r in rows} == {"Marseille", "Aix-en-Provence", "Martigues", "Aubagne"}
    history = httpx.get(f"{ready.broker}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:atmo:town:13056",
                        params={"attrs": "airQualityIndex,dateObserved,provisional", "options": "temporalValues"},
                        headers={"NGSILD-Tenant": "metropole", "Link": LINK}, timeout=10).json()
    final = {t for v, t in history["provisional"]["values"] if v is False}
    days = {t: v for v, t in history["dateObserved"]["values"]}
    indices = {days[t]: v for v, t in history["airQualityIndex"]["values"] if t in final}
    martigues = {r["date"]: int(r["indice"]) for r in rows if r["commune"] == "Martigues" and r["provisoire"] == "false"}
    assert martigues and all(indices[d] == v for d, v in martigues.items())
    geo = httpx.get(f"{ready.dashboard}/donnees/bruit-capteurs.geojson", timeout=30).json()
    assert geo["type"] == "FeatureCollection" and geo["features"]
    assert geo["features"][0]["geometry"]["type"] == "Point" and "Lden" in geo["features"][0]["properties"]
    hourly = httpx.get(f"{ready.dashboard}/donnees/mesures-horaires.csv", timeout=60).text.splitlines()
    assert hourly[0] == "heure_utc,capteur,code_insee,commune,longitude,latitude,grandeur,valeur" and len(hourly) > 100
    catalogue = httpx.get(f"{ready.dashboard}/donnees/catalogue.jsonld", timeout=10)
    assert catalogue.headers["content-type"].startswith("application/ld+json")
    body = catalogue.json()
    assert body["@type"] == "dcat:Catalog" and len(body["dcat:dataset"]) == 7
    for dataset in body["dcat:dataset"]:
        assert dataset["dct:license"]["@id"].startswith("https://www.etalab.gouv.fr/licence-ouverte")
        for distribution in dataset["dcat:distribution"]:
            assert httpx.get(distribution["dcat:downloadURL"]["@id"], timeout=60).status_code == 200
