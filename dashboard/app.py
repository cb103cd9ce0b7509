"""The dashboard's HTTP application (FastAPI): pages in French at `/` and English under `/en/`, open data, JSON.

    app = create_dashboard_app(DashboardSettings(broker_url="http://127.0.0.1:1026", tenant="metropole"))

Handlers are plain functions (run in the thread pool): they read the broker
through `BrokerSource` and render Jinja2 templates with autoescaping.
Responses are gzip-compressed; the one stylesheet is cached a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dashboard import about, opendata, report, views
from dashboard.i18n import LANGS, PATHS, path, words
from dashboard.source import BrokerSource
from indicators.thresholds import ATMO_LEVELS
from indicators.timebase import local_day
from indicators.towns import town_by_insee, towns
from models.context.smart_data_models import SDM_ALL_CONTEXT_URL
from web.settings import EnvSettings, load, var

HERE = Path(__file__).resolve().parent
STYLE = (HERE / "static" / "style.css").read_bytes()


class DashboardEnv(EnvSettings):
    """The variables of `DashboardSettings` (pydantic-settings, web/settings.py)."""

    broker_url: str = var("METROPOLE_DASHBOARD_BROKER_URL")
    tenant: str = var("METROPOLE_DASHBOARD_TENANT")


@dataclass(frozen=True)
class DashboardSettings:
    """Which broker and tenant the dashboard reads (env: METROPOLE_DASHBOARD_*), and its download window."""

    broker_url: str = "http://127.0.0.1:1026"
    tenant: str = "metropole"
    context: str = SDM_ALL_CONTEXT_URL
    cache_seconds: float = 5.0
    download_days: int = 35

    @classmethod
    def from_env(cls, **overrides: Any) -> DashboardSettings:
        """Defaults, then METROPOLE_DASHBOARD_{BROKER_URL,TENANT}, then overrides."""
        values: dict[str, Any] = load(DashboardEnv)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def create_dashboard_app(settings: DashboardSettings) -> FastAPI:
    """The dashboard application."""
    source = BrokerSource(settings.broker_url, settings.tenant, settings.context, ttl=settings.cache_seconds)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    app = FastAPI(title="Metropole dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.state.source = source

    def page(request: Request, lang: str, name: str, template: str, data: dict[str, Any] | None = None,
             status: int = 200) -> HTMLResponse:
        other = "en" if lang == "fr" else "fr"
        params = dict(request.path_params)
        switch = PATHS[name][0 if other == "fr" else 1].format(**params) if name in PATHS else path(other, "home")
        context = {"lang": lang, "w": words(lang), "path": lambda n, **ids: path(lang, n, **ids), "page": name,
                   "switch": switch, "other": other, "all_towns": towns(), "now": datetime.now(UTC), **(data or {})}
        return HTMLResponse(env.get_template(template).render(context), status_code=status)

    def not_found(request: Request, lang: str) -> HTMLResponse:
        return page(request, lang, "notfound", "notfound.html", status=404)

    for lang in LANGS:
        def routes(lang: str = lang) -> None:
            @app.get(PATHS["home"][LANGS.index(lang)], response_class=HTMLResponse)
            def home(request: Request) -> HTMLResponse:
                return page(request, lang, "home", "home.html", views.home(source, lang))

            @app.get(PATHS["town"][LANGS.index(lang)], response_class=HTMLResponse)
            def town(request: Request, insee: str) -> HTMLResponse:
                data = views.town_page(source, lang, insee)
                return page(request, lang, "town", "town.html", data) if data else not_found(request, lang)

            @app.get(PATHS["sensor"][LANGS.index(lang)].replace("{sensor}", "{sensor:path}"), response_class=HTMLResponse)
            def sensor(request: Request, sensor: str) -> HTMLResponse:
                data = views.sensor_page(source, lang, sensor)
                return page(request, lang, "sensor", "sensor.html", data) if data else not_found(request, lang)

            @app.get(PATHS["about"][LANGS.index(lang)], response_class=HTMLResponse)
            def explain(request: Request) -> HTMLResponse:
                return page(request, lang, "about", "about.html", about.tables(lang))

            @app.get(PATHS["data"][LANGS.index(lang)], response_class=HTMLResponse)
            def data(request: Request) -> HTMLResponse:
                return page(request, lang, "data", "data.html", {"datasets": list(opendata.DATASETS.values()),
                                                                 "reports": _report_links(lang)})

            @app.get(PATHS["report"][LANGS.index(lang)], response_class=HTMLResponse)
            def monthly(request: Request, place: str, month: str) -> HTMLResponse:
                try:
                    report.month_span(month)
                except ValueError:
                    return not_found(request, lang)
                current = report.summary(source, place, month)
                if current is None:
                    return not_found(request, lang)
                before = report.summary(source, place, report.previous_month(month)) or {}
                town = town_by_insee(place)
                return page(request, lang, "report", "report.html", {
                    "place": place, "month": month, "place_name": town.name if town else words(lang)["metropole"],
                    "current": current, "before": before, "changes": report.compare(current, before),
                    "previous": report.previous_month(month),
                    "levels": {level.level: level.label(lang) for level in ATMO_LEVELS.values()}})
        routes()

    @app.get("/donnees/catalogue.jsonld")
    def dcat(request: Request) -> Response:
        start, end = opendata.period(None, None, settings.download_days, datetime.now(UTC))
        body = opendata.catalog(str(request.base_url), local_day(start), local_day(end))
        return JSONResponse(body, media_type="application/ld+json")

    @app.get("/donnees/{name}.{ext}")
    def download(name: str, ext: str, request: Request) -> Response:
        dataset = opendata.DATASETS.get(name)
        if dataset is None or ext not in ("csv", "geojson"):
            return JSONResponse({"detail": f"no data set {name}.{ext}"}, status_code=404)
        try:
            start, end = opendata.period(request.query_params.get("from"), request.query_params.get("to"),
                                         settings.download_days, datetime.now(UTC))
        except ValueError:
            return JSONResponse({"detail": "from/to must be dates (YYYY-MM-DD)"}, status_code=400)
        rows = dataset.rows(source, start, end)
        disposition = {"Content-Disposition": f'attachment; filename="{name}.{ext}"'}
        if ext == "csv":
            return Response(opendata.to_csv(dataset, rows), media_type="text/csv; charset=utf-8", headers=disposition)
        return Response(opendata.to_geojson(dataset, rows), media_type="application/geo+json", headers=disposition)

    @app.get("/api/towns")
    def api_towns() -> JSONResponse:
        return JSONResponse(views.api_towns(source))

    @app.get("/static/style.css")
    def style() -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    return app


def _report_links(lang: str) -> list[dict[str, str]]:
    month = local_day(datetime.now(UTC)).strftime("%Y-%m")
    places = [("metropole", words(lang)["metropole"])] + [(t.insee, t.name) for t in towns()]
    return [{"name": name, "href": path(lang, "report", place=code, month=month), "month": month} for code, name in places]
