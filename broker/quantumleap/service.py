"""QuantumLeapService: the history reads, writes and deletes behind the /v2 routes.

It works on the broker's own history (broker.state.BrokerState: history,
temporal, recorder, resolver), so what the NGSI-LD API writes is read here and the other way
round. The routes turn its results into QuantumLeap's answer shapes
(shapes.py); this module holds no HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from broker.quantumleap import ingest
from broker.quantumleap import notify as nt
from broker.quantumleap.errors import QLError, ambiguous
from broker.quantumleap.names import Names
from broker.quantumleap.params import Params, path_matches
from broker.quantumleap.series import Pick, Series, load_buckets, load_rows
from broker.query.geo import compile_geo, parse_geoquery
from broker.query.regex import compile_pattern
from broker.state import BrokerState
from broker.temporal.model import EntityRow
from broker.temporal.storage import HistoryStorage, TimeRange
from models.context import SDM_ALL_CONTEXT_URL, Context
from models.errors import NgsiLdError
from models.validation import check_uri

StateSource = Callable[[], BrokerState | None]
"""The state of the broker whose history this serves, None until its lifespan has opened it (broker.state)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """What a query selects entities by (every member optional)."""

    entity_id: str | None = None
    entity_type: str | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None


class QuantumLeapService:
    """History operations of the QuantumLeap API over the state of a running broker app."""

    def __init__(self, state: StateSource) -> None:
        self._state = state
        self._writer = ingest.NotifyWriter()

    # ------------------------------------------------------------ plumbing

    def broker(self) -> BrokerState:
        """The broker app's state; 503 until its lifespan has opened history."""
        st = self._state()
        if st is None:
            raise QLError(503, "Service Unavailable", "history storage is not ready")
        return st

    @property
    def history(self) -> HistoryStorage:
        return self.broker().history

    async def context(self) -> Context:
        """The platform's default context (core + every Smart Data Models subject)."""
        ctx: Context = await self.broker().resolver.aresolve(SDM_ALL_CONTEXT_URL)
        return ctx

    async def names(self) -> Names:
        return Names(await self.context())

    async def catch_up(self) -> None:
        """Wait until history holds every write the broker committed before this call (read-your-writes)."""
        await self.broker().recorder.catch_up()

    # ------------------------------------------------------------ selection

    async def select(self, tenant: str, paths: list[str], names: Names, sel: Selection,
                     geo: tuple[str, str, str] | None = None, rng: TimeRange | None = None) -> list[Pick]:
        """The entities with history a query names, in the caller's service paths, by id."""
        await self.catch_up()
        rows: list[EntityRow] = await self.history.entities(tenant)
        if paths != ["/"]:
            stored = await self.history.service_paths(tenant)
            rows = [r for r in rows if path_matches(stored.get(r.entity_id), paths)]
        if sel.entity_id is not None:
            rows = [r for r in rows if r.entity_id == sel.entity_id or nt.shown_id(r.entity_id) == sel.entity_id]
        if sel.ids:
            wanted = set(sel.ids)
            rows = [r for r in rows if r.entity_id in wanted or nt.shown_id(r.entity_id) in wanted]
        if sel.id_pattern:
            # sql_translator.py:829-835: entity_id ~* '<pattern>($|.*)', a case-insensitive search
            rx = compile_pattern(sel.id_pattern, "idPattern", ignore_case=True)
            rows = [r for r in rows if rx.search(nt.shown_id(r.entity_id))]
        if sel.entity_type:
            rows = [r for r in rows if any(names.matches(t, sel.entity_type) for t in r.types)]
        picks = [Pick(r.entity_id, nt.shown_id(r.entity_id), names.show(r.types[0]) if r.types else "") for r in rows]
        if sel.entity_id is not None and not sel.entity_type and len({k.shown_type.lower() for k in picks}) > 1:
            raise ambiguous(sel.entity_id)  # sql_translator.py:1069-1076
        if geo is not None and picks:
            picks = await self._geo_filter(tenant, picks, geo, names, rng or TimeRange())
        return picks

    async def _geo_filter(self, tenant: str, picks: list[Pick], geo: tuple[str, str, str], names: Names,
                          rng: TimeRange) -> list[Pick]:
        """Entities whose latest location in the time range matches the NGSI-v2 simple-location-format query."""
        try:
            gq = parse_geoquery(*slf_to_ld(*geo))
        except (NgsiLdError, ValueError, TypeError, IndexError):
            raise QLError(400, "ValueError", "Invalid geographical query parameters") from None
        location = names.context.expand_term("location")
        predicate = compile_geo(gq, lambda _: location)
        hits = await self.history.instances(tenant, [k.stored_id for k in picks], [location], rng, 1, True)
        latest = {h.entity_id: orjson.loads(h.instance) for h in hits}
        return [k for k in picks if k.stored_id in latest and predicate({location: [latest[k.stored_id]]})]

    # ------------------------------------------------------------ reads

    async def series(self, tenant: str, picks: list[Pick], names: Names, attrs: list[str] | None, p: Params) -> list[Series]:
        """Rows of the picked entities, type by type (sql_translator.py:1098: one statement per type table)."""
        if attrs is not None:
            def show(iri: str) -> str | None:
                return next((a for a in attrs if names.matches(iri, a)), None)
        else:
            show = names.show
        groups: dict[str, list[Pick]] = {}
        for k in picks:
            groups.setdefault(k.shown_type.lower(), []).append(k)
        out: list[Series] = []
        for key in sorted(groups):
            rolled = await load_buckets(self.history, tenant, groups[key], show, p)
            out.extend(rolled if rolled is not None else await load_rows(self.history, tenant, groups[key], show, p))
        return out

    async def latest(self, tenant: str, picks: list[Pick], p: Params) -> list[tuple[Pick, int]]:
        """NTNE: each entity's latest time index in the range (sql_translator.py:1153-1218)."""
        if not picks:
            return []
        hits = await self.history.instances(tenant, [k.stored_id for k in picks], None, p.time_range(), 1, True)
        latest: dict[str, int] = {}
        for h in hits:
            if h.time_us > latest.get(h.entity_id, -(2**62)):
                latest[h.entity_id] = h.time_us
        found = [(k, latest[k.stored_id]) for k in picks if k.stored_id in latest]
        # ORDER BY time_index DESC, entity_type, entity_id LIMIT/OFFSET (sql_translator.py:1201)
        found.sort(key=lambda f: (-f[1], f[0].shown_type, f[0].shown_id))
        return found[p.offset : p.offset + min(p.limit, 10_000)]

    # ------------------------------------------------------------ writes

    async def notify(self, tenant: str, paths: list[str], body: dict[str, Any], *, link: Any, time_index_attr: str | None) -> None:
        """Store a notification's entities; the service paths go with them (sql_translator.py:202-247)."""
        st = self.broker()
        stamp = nt.now()
        if not nt.is_ld_notification(body):
            ctx = await self.context()
            fast = [ingest.v2_prepared(tenant, item, time_index_attr, stamp, ctx) for item in body["data"]]
            if None not in fast and (len(paths) == 1 or len(paths) == len(fast)):
                # every entity on the one-pass path (ingest.v2_prepared): the rows, types and paths below
                by_path = {p.entity_id: paths[n] if len(paths) > 1 else paths[0]
                           for n, p in enumerate(fast) if p is not None and p.rows}
                await self._writer.write(st, tenant, [p for p in fast if p is not None and p.rows], by_path)
                return
        written: list[tuple[dict[str, Any], Context]] = []
        if nt.is_ld_notification(body):
            notified_at = body.get("notifiedAt")
            notified = notified_at if isinstance(notified_at, str) else stamp
            for item in body["data"]:
                entity = nt.ld_entity(item, notified)
                ctx_value = (item.get("@context") if isinstance(item, dict) else None) or body.get("@context") or link
                written.append((entity, await st.resolver.aresolve(ctx_value)))
        else:
            ctx = await self.context()
            written = [(nt.v2_entity(item, time_index_attr, stamp), ctx) for item in body["data"]]
        if len(paths) != 1 and len(paths) != len(written):
            raise QLError(400, "InvalidHeaderValue", "Multiple servicePath are allowed only if their number match"
                          " the number of entities")
        by_entity: dict[str, str] = {}
        items = []
        for n, (entity, ctx) in enumerate(written):
            if len(entity) > 2:  # an entity without attributes adds no row (reporter.py:113-130)
                items.append((entity, ctx))
                by_entity[entity["id"]] = paths[n] if len(paths) > 1 else paths[0]
        # as TemporalService.write_many: every id checked, then the rows of each entity in turn
        eids = [check_uri(entity.get("id"), "entity id") for entity, _ in items]
        prepared = [ingest.prepare(tenant, eid, entity, ctx) for eid, (entity, ctx) in zip(eids, items, strict=True)]
        await self._writer.write(st, tenant, prepared, by_entity)  # one history transaction, with others arriving

    async def delete(self, tenant: str, paths: list[str], picks: list[Pick], p: Params) -> int:
        """Delete the picked entities' rows in [fromDate, toDate] (all of them without dates); rows deleted."""
        ids = [k.stored_id for k in picks]
        if not ids:
            return 0
        if p.from_us is None and p.to_us is None:
            deleted = 0
            for eid in ids:
                deleted += int(await self.history.delete_entity(tenant, eid))
            return deleted
        return await self.history.delete_instances(tenant, ids, p.time_range())


def slf_to_ld(georel: str, geometry: str, coords: str) -> tuple[str, str, str, None]:
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
    kind: str
    coordinates: Any
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
