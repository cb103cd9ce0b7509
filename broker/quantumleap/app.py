"""The QuantumLeap-compatible history API (QuantumLeap 1.0, /v2) over the broker's temporal history.

    POST /v2/notify                                   NGSI-v2 and NGSI-LD notifications -> history
    GET  /v2/entities                                 NTNE    every entity with history, its latest time index
    GET  /v2/entities/{id}[/value]                    1T1ENA  one entity, several attributes
    GET  /v2/entities/{id}/attrs/{attr}[/value]       1T1E1A  one entity, one attribute
    GET  /v2/types/{type}[/value]                     1TNENA  entities of a type, several attributes
    GET  /v2/types/{type}/attrs/{attr}[/value]        1TNE1A  entities of a type, one attribute
    GET  /v2/attrs/{attr}[/value]                     NTNE1A  every entity with the attribute, by type

`create_quantumleap_app(state)` builds the app; `state` is a callable giving
the broker app's `app.state` (history, temporal, recorder, resolver): the
broker mounts it at /v2 on its own port, and `metropole run` serves it on
8668 too, borrowing the same state, so both read and write the very history
storage the NGSI-LD temporal API uses. Fiware-Service is the NGSILD-Tenant
('' by default). Attribute and type names are short names under the core +
Smart Data Models all-subjects context; a full IRI is accepted as well.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.http import link_context
from broker.quantumleap import notify as nt
from broker.quantumleap.series import Params, QLError, Series, aggregate_series, bad, iso, load_rows, merge_global, not_found
from broker.query.geo import compile_geo, parse_geoquery
from broker.temporal.model import EntityRow
from broker.temporal.storage import TimeRange
from models.context import SDM_ALL_CONTEXT_URL
from models.errors import NgsiLdError
from web.resources import ResourcePaths

log = logging.getLogger("broker.quantumleap")
QL_VERSION = "1.0.0"
StateSource = Callable[[], Any]


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _error(exc: QLError) -> Response:
    return _json({"error": exc.error, "description": exc.description}, exc.status)


class _Ctx:
    """Name matching under the core + Smart Data Models context."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self._compact: dict[str, str] = {}

    def compact(self, iri: str) -> str:
        name = self._compact.get(iri)
        if name is None:
            name = self._compact[iri] = self.context.compact_iri(iri)
        return name

    def matches(self, iri: str, name: str) -> bool:
        return iri == name or self.compact(iri) == name or iri == self.context.expand_term(name)


def create_quantumleap_app(state: StateSource, *, prefix: str = "/v2") -> FastAPI:
    """The /v2 QuantumLeap API reading and writing the history of the broker whose app.state `state()` returns."""
    app = FastAPI(title="metropole QuantumLeap-compatible history API", version=QL_VERSION,
                  openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    app.add_middleware(ResourcePaths)

    def services() -> Any:
        st = state()
        if getattr(st, "temporal", None) is None:
            raise QLError(503, "Service Unavailable", "history storage is not ready")
        return st

    async def context() -> _Ctx:
        return _Ctx(await services().resolver.aresolve(SDM_ALL_CONTEXT_URL))

    def tenant_of(request: Request) -> str:
        path = request.headers.get("fiware-servicepath")
        if path is not None and path.strip() and not all(p.strip().startswith("/") for p in path.split(",")):
            raise QLError(400, "InvalidHeaderValue", f"Fiware-ServicePath must start with '/', got {path!r}")
        service = request.headers.get("fiware-service") or request.headers.get("ngsild-tenant") or ""
        if service and not re.fullmatch(r"[A-Za-z0-9_\-]{1,50}", service):
            raise QLError(400, "InvalidHeaderValue", f"invalid Fiware-Service {service!r}")
        return service

    async def catch_up() -> None:
        recorder = getattr(services(), "recorder", None)
        if recorder is not None:
            await recorder.catch_up()

    # ------------------------------------------------------------ selection

    async def select(request: Request, p: Params, ctx: _Ctx, *, entity_id: str | None = None,
                     entity_type: str | None = None, ids: list[str] | None = None) -> tuple[str, list[tuple[str, str, str]]]:
        tenant = tenant_of(request)
        await catch_up()
        rows: list[EntityRow] = await services().history.entities(tenant)
        if entity_id is not None:
            rows = [r for r in rows if r.entity_id == entity_id or nt.shown_id(r.entity_id) == entity_id]
        if ids:
            wanted = set(ids)
            rows = [r for r in rows if r.entity_id in wanted or nt.shown_id(r.entity_id) in wanted]
        pattern = request.query_params.get("idPattern")
        if pattern:
            try:
                rx = re.compile(pattern)
            except re.error:
                raise bad(f"idPattern is not a regular expression: {pattern!r}") from None
            rows = [r for r in rows if rx.search(nt.shown_id(r.entity_id))]
        if entity_type:
            rows = [r for r in rows if any(ctx.matches(t, entity_type) for t in r.types)]
        if p.geo is not None and rows:
            rows = await geo_filter(tenant, rows, p, ctx)
        chosen = [(r.entity_id, entity_id if entity_id is not None else nt.shown_id(r.entity_id),
                   ctx.compact(r.types[0]) if r.types else "") for r in rows]
        return tenant, chosen

    async def geo_filter(tenant: str, rows: list[EntityRow], p: Params, ctx: _Ctx) -> list[EntityRow]:
        """Entities whose latest location in the time range matches the v2 simple-location-format query."""
        assert p.geo is not None
        georel, geometry, coords = p.geo
        try:
            gq = parse_geoquery(*_slf_to_ld(georel, geometry, coords))
        except (NgsiLdError, ValueError, TypeError, IndexError):
            raise QLError(400, "ValueError", "Invalid geographical query parameters") from None
        location = ctx.context.expand_term("location")
        predicate = compile_geo(gq, lambda _: location)
        rng = p.time_range()
        hits = await services().history.instances(tenant, [r.entity_id for r in rows], [location], rng, 1, True)
        latest = {h.entity_id: orjson.loads(h.instance) for h in hits}
        return [r for r in rows if r.entity_id in latest and predicate({location: [latest[r.entity_id]]})]

    async def series_for(request: Request, p: Params, ctx: _Ctx, entities: list[tuple[str, str, str]],
                         tenant: str, attrs: list[str] | None) -> list[Series]:
        if attrs is not None:
            def names(iri: str) -> str | None:
                return next((a for a in attrs if ctx.matches(iri, a)), None)
        else:
            def names(iri: str) -> str | None:
                return ctx.compact(iri)
        return await load_rows(services().history, tenant, entities, names, p, aggregate=p.aggr_method is not None)

    def attrs_param(request: Request, p: Params) -> list[str] | None:
        text = request.query_params.get("attrs")
        attrs = [a.strip() for a in text.split(",") if a.strip()] if text else None
        if p.aggr_method and not attrs:
            raise bad(f"Specified aggrMethod = {p.aggr_method} but missing attrs parameter.")
        return attrs

    def ids_param(request: Request) -> list[str] | None:
        text = request.query_params.get("id")
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    def column(s: Series, attr: str, p: Params) -> tuple[list[Any], list[Any]]:
        """(index, values) of one attribute of a series, aggregated when asked."""
        values = s.columns.get(attr, [None] * len(s.index))
        if p.aggr_method:
            return aggregate_series(s.index, values, p)
        return [iso(t) for t in s.index], values

    def attributes(s: Series, p: Params, attrs: list[str] | None) -> tuple[list[Any], list[dict[str, Any]]]:
        names = sorted(n for n in (attrs if attrs is not None else s.columns) if n in s.columns)  # QuantumLeap sorts them
        out, index = [], [iso(t) for t in s.index]
        for n in names:
            idx, values = column(s, n, p)
            if p.aggr_method:
                index = idx
            out.append({"attrName": n, "values": values})
        return index, out

    def range_index(p: Params, parsed: bool) -> list[str]:
        if not parsed:
            return [p.from_text or "", p.to_text or ""]
        return [_utc_iso(p.from_text), _utc_iso(p.to_text)]

    # ------------------------------------------------------------ endpoints

    @app.post(f"{prefix}/notify")
    async def notify(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise QLError(400, "Bad Request", "the notification body is not JSON") from None
        if body is None:
            raise QLError(400, "Bad Request", "Discarding notification due to lack of request body. Lost in a redirect maybe?")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise QLError(400, "Bad Request", "Discarding notification due to lack of request body content.")
        tenant = tenant_of(request)
        st = services()
        stamp = nt.now()
        if nt.is_ld_notification(body):
            notified = body.get("notifiedAt") if isinstance(body.get("notifiedAt"), str) else stamp
            link = link_context(request)
            pending = []
            for item in body["data"]:
                entity = nt.ld_entity(item, notified)
                ctx_value = (item.get("@context") if isinstance(item, dict) else None) or body.get("@context") or link
                pending.append((entity, ctx_value))
            for entity, ctx_value in pending:
                await st.temporal.write(tenant, entity, await st.resolver.aresolve(ctx_value))
        else:
            header_attr = request.headers.get("fiware-timeindex-attribute")
            entities = [nt.v2_entity(item, header_attr, stamp) for item in body["data"]]
            ctx = await st.resolver.aresolve(SDM_ALL_CONTEXT_URL)
            for entity in entities:
                if len(entity) > 2:
                    await st.temporal.write(tenant, entity, ctx)
        return Response("Notification successfully processed", media_type="text/plain")

    @app.get(f"{prefix}/entities")
    async def entities(request: Request) -> Response:
        """NTNE: every entity with history (type, idPattern, fromDate/toDate, limit/offset), index its latest time."""
        p = Params.parse(request.query_params)
        ctx = await context()
        tenant, chosen = await select(request, p, ctx, entity_type=request.query_params.get("type"))
        latest: dict[str, int] = {}
        if chosen:
            hits = await services().history.instances(tenant, [c[0] for c in chosen], None, p.time_range(), 1, True)
            for h in hits:
                if h.time_us > latest.get(h.entity_id, -(2**62)):
                    latest[h.entity_id] = h.time_us
        rows = sorted((c for c in chosen if c[0] in latest), key=lambda c: c[0])[p.offset : p.offset + p.limit]
        if not rows:
            raise not_found()
        return _json([{"entityId": c[1], "entityType": c[2], "index": iso(latest[c[0]])} for c in rows])

    async def one_entity(request: Request, entity_id: str, value_only: bool) -> Response:
        p = Params.parse(request.query_params)
        ctx = await context()
        attrs = attrs_param(request, p)
        tenant, chosen = await select(request, p, ctx, entity_id=entity_id, entity_type=request.query_params.get("type"))
        series = await series_for(request, p, ctx, chosen[:1], tenant, attrs)
        if not series:
            raise not_found()
        s = series[0]
        index, attributes_out = attributes(s, p, attrs)
        if p.aggr_method and not p.aggr_period:
            index = []
        if value_only:
            return _json({"index": index, "attributes": attributes_out})
        return _json({"entityId": s.entity_id, "entityType": s.entity_type, "index": index, "attributes": attributes_out})

    @app.get(f"{prefix}/entities/{{entity_id}}")
    async def entity(request: Request, entity_id: str) -> Response:
        return await one_entity(request, entity_id, False)

    @app.get(f"{prefix}/entities/{{entity_id}}/value")
    async def entity_value(request: Request, entity_id: str) -> Response:
        return await one_entity(request, entity_id, True)

    async def one_attr(request: Request, entity_id: str, attr: str, value_only: bool) -> Response:
        p = Params.parse(request.query_params)
        ctx = await context()
        tenant, chosen = await select(request, p, ctx, entity_id=entity_id, entity_type=request.query_params.get("type"))
        series = await series_for(request, p, ctx, chosen[:1], tenant, [attr])
        if not series or attr not in series[0].columns:
            raise not_found()
        s = series[0]
        index, values = column(s, attr, p)
        if value_only:
            return _json({"index": index, "values": values})
        return _json({"entityId": s.entity_id, "entityType": s.entity_type, "attrName": attr, "index": index, "values": values})

    @app.get(f"{prefix}/entities/{{entity_id}}/attrs/{{attr:path}}")
    async def entity_attr(request: Request, entity_id: str, attr: str) -> Response:
        name, value_only = _value_suffix(attr)
        return await one_attr(request, entity_id, name, value_only)

    def ordered(series: list[Series], ids: list[str] | None) -> list[Series]:
        """Given ids first, in their order, then the rest by id (as QuantumLeap does)."""
        by_id = {s.entity_id: s for s in series}
        out = [by_id.pop(i) for i in (ids or []) if i in by_id]
        return out + [by_id[k] for k in sorted(by_id)]

    async def type_attr(request: Request, entity_type: str, attr: str, value_only: bool) -> Response:
        p = Params.parse(request.query_params)
        ctx = await context()
        ids = ids_param(request)
        tenant, chosen = await select(request, p, ctx, entity_type=entity_type, ids=ids)
        series = [s for s in await series_for(request, p, ctx, chosen, tenant, [attr]) if attr in s.columns]
        if not series:
            raise not_found()
        if p.aggr_method and p.aggr_scope == "global":
            index, values = column(merge_global(series), attr, p)
            if not p.aggr_period:
                index = range_index(p, False)
            if value_only:
                return _json({"index": index, "values": values})
            return _json({"entityType": entity_type, "attrName": attr, "index": index, "values": values})
        entries = []
        for s in ordered(series, ids):
            index, values = column(s, attr, p)
            if p.aggr_method and not p.aggr_period:
                index = range_index(p, False) if ids and s.entity_id in ids else []
            entries.append({"entityId": s.entity_id, "index": index, "values": values})
        if value_only:
            return _json({"values": entries})
        return _json({"entityType": entity_type, "attrName": attr, "entities": entries})

    @app.get(f"{prefix}/types/{{entity_type:path}}/attrs/{{attr:path}}")
    async def type_attr_endpoint(request: Request, entity_type: str, attr: str) -> Response:
        name, value_only = _value_suffix(attr)
        return await type_attr(request, entity_type, name, value_only)

    async def type_entities(request: Request, entity_type: str, value_only: bool) -> Response:
        p = Params.parse(request.query_params)
        ctx = await context()
        attrs = attrs_param(request, p)
        ids = ids_param(request)
        tenant, chosen = await select(request, p, ctx, entity_type=entity_type, ids=ids)
        series = await series_for(request, p, ctx, chosen, tenant, attrs)
        if not series:
            raise not_found()
        if p.aggr_method and p.aggr_scope == "global":
            merged = merge_global(series)
            index, attributes_out = attributes(merged, p, attrs)
            if not p.aggr_period:
                index = range_index(p, True)
            if value_only:
                return _json({"index": index, "attributes": attributes_out})
            return _json({"entityType": entity_type, "index": index, "attributes": attributes_out})
        entries = []
        for s in sorted(series, key=lambda s: s.entity_id):
            index, attributes_out = attributes(s, p, attrs)
            if p.aggr_method and not p.aggr_period:
                index = range_index(p, True)
            entries.append({"entityId": s.entity_id, "index": index, "attributes": attributes_out})
        if value_only:
            return _json({"values": entries})
        return _json({"entityType": entity_type, "entities": entries})

    @app.get(f"{prefix}/types/{{entity_type:path}}")
    async def type_endpoint(request: Request, entity_type: str) -> Response:
        name, value_only = _value_suffix(entity_type)
        return await type_entities(request, name, value_only)

    async def attr_all(request: Request, attr: str, value_only: bool) -> Response:
        p = Params.parse(request.query_params)
        ctx = await context()
        ids = ids_param(request)
        tenant, chosen = await select(request, p, ctx, entity_type=request.query_params.get("type"), ids=ids)
        series = [s for s in await series_for(request, p, ctx, chosen, tenant, [attr]) if attr in s.columns]
        if not series:
            raise not_found()
        shown_types = {s.entity_id: s.entity_type for s in series}
        groups: dict[str, list[Series]] = {}
        for s in sorted(series, key=lambda s: (shown_types[s.entity_id], s.entity_id)):
            groups.setdefault(s.entity_type, []).append(s)
        out = []
        for t, members in groups.items():
            if p.aggr_method and p.aggr_scope == "global":
                index, values = column(merge_global(members), attr, p)
                if not p.aggr_period:
                    index = range_index(p, True)
                out.append({"entityType": t, "index": index, "values": values})
                continue
            entries = []
            for s in members:
                index, values = column(s, attr, p)
                if p.aggr_method and not p.aggr_period:
                    index = range_index(p, True)
                entries.append({"entityId": s.entity_id, "index": index, "values": values})
            out.append({"entityType": t, "entities": entries})
        if value_only:
            return _json({"values": out})
        return _json({"attrName": attr, "types": out})

    @app.get(f"{prefix}/attrs/{{attr:path}}")
    async def attr_endpoint(request: Request, attr: str) -> Response:
        name, value_only = _value_suffix(attr)
        return await attr_all(request, name, value_only)

    if prefix:  # served on a port of its own: QuantumLeap's /version and /health too
        @app.get("/version")
        async def version() -> Response:
            return _json({"version": QL_VERSION})

        @app.get("/health")
        async def health() -> Response:
            services()
            return Response(orjson.dumps({"status": "pass"}), media_type="application/health+json")

    @app.exception_handler(QLError)
    async def ql_error(request: Request, exc: QLError) -> Response:
        return _error(exc)

    @app.exception_handler(NgsiLdError)
    async def ngsi_ld_error(request: Request, exc: NgsiLdError) -> Response:
        status = exc.status if 400 <= exc.status < 500 else 500
        return _json({"error": type(exc).__name__, "description": exc.detail}, status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _json({"error": "Not Found", "description": f"no resource at {request.url.path}"}, 404)
        return _json({"error": "Bad Request" if exc.status_code < 500 else "Internal Error", "description": str(exc.detail)},
                     exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _json({"error": "Internal Error", "description": f"{type(exc).__name__}: {exc}"}, 500)

    return app


def _value_suffix(name: str) -> tuple[str, bool]:
    """Names may be IRIs holding '/' (sent %2F-encoded): 'x/value' is the /value variant of 'x'."""
    if name.endswith("/value") and len(name) > len("/value"):
        return name.removesuffix("/value"), True
    return name, False


def _utc_iso(text: str | None) -> str:
    """QuantumLeap's rendering of fromDate/toDate in a range index: the time read as UTC, ISO format; '' if none."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return moment.replace(tzinfo=timezone.utc).isoformat()


def _slf_to_ld(georel: str, geometry: str, coords: str) -> tuple[str, str, str, None]:
    """NGSI-v2 simple location format (georel, geometry, coords 'lat,lon;...') -> NGSI-LD geo-query parameters."""
    parts = georel.split(";")
    rel = parts[0]
    if rel == "near":
        if len(parts) != 2 or ":" not in parts[1]:
            raise ValueError("near needs maxDistance or minDistance")
        key, _, value = parts[1].partition(":")
        if key not in ("maxDistance", "minDistance"):
            raise ValueError(key)
        ld_rel = f"near;{key}=={float(value):g}"
    elif rel == "coveredBy":
        ld_rel = "within"
    elif rel in ("intersects", "disjoint", "equals") and len(parts) == 1:
        ld_rel = rel
    else:
        raise ValueError(georel)
    points = []
    for item in coords.split(";"):
        lat_text, lon_text = item.split(",")
        lat, lon = float(lat_text), float(lon_text)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(item)
        points.append([lon, lat])
    if geometry == "point":
        if len(points) != 1:
            raise ValueError(coords)
        kind, coordinates = "Point", points[0]
    elif geometry == "line":
        kind, coordinates = "LineString", points
    elif geometry == "polygon":
        kind, coordinates = "Polygon", [points]
    elif geometry == "box":
        if len(points) != 2:
            raise ValueError(coords)
        (x1, y1), (x2, y2) = points
        kind, coordinates = "Polygon", [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]
    else:
        raise ValueError(geometry)
    if ld_rel.startswith("near") and kind != "Point":
        raise ValueError("near needs a point")
    return ld_rel, kind, json.dumps(coordinates), None
