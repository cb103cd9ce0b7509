"""EntityMaps (clauses 4.5.25, 5.2.39, 5.14.1-5.14.4, 6.32): which entities a distributed query found where.

A Query Entities with `entityMap=true` (GET /entities, POST /entityOperations/query)
creates an EntityMap: every entity id the query found, each with the ids of the
registrations that answered it, "@none" for this broker's own store (Table
5.2.39-2). The response names it in an `NGSILD-EntityMap` header (the resource
path /ngsi-ld/v1/entityMaps/{id}). A later query sending that header is answered
from the entities the map lists only. Temporal queries make and use maps the same
way (5.14.5, broker.api.temporal). /entityMaps/{id} is retrieved, updated
(expiresAt; output-only members are ignored, clause 5.14.2.4) and deleted (6.32) by the
routes of broker.api.entitymaps.

Maps are kept in the store's registry (migration 6, both stores) under the kind
'entitymap', per tenant: doc = {expiresAt, entityMap, linkedMaps}. A map past its
expiresAt is gone: it is deleted when next looked up (404 ResourceNotFound).
The lifetime is `entityMapLifetime` (ISO 8601 duration, clause 6.4.3.2), by
default DEFAULT_LIFETIME, at most MAX_LIFETIME (the broker sets expiresAt).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from fastapi import Request

from broker.store.base import RegistryDoc, Store
from broker.temporal.query import duration_us
from models.errors import BadRequestData, ResourceNotFound
from models.media import API
from models.validation import check_uri, parse_datetime

if TYPE_CHECKING:  # broker.state imports broker.federation: a run-time import back would be a cycle
    from broker.state import BrokerState

KIND = "entitymap"
HEADER = "NGSILD-EntityMap"
LOCAL = "@none"
DEFAULT_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(days=1)
PATH = f"{API}/entityMaps/"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lifetime_of(params: Any) -> timedelta:
    """The requested `entityMapLifetime`, within MAX_LIFETIME; BadRequestData when it is no ISO 8601 duration."""
    text = params.get("entityMapLifetime")
    if not text:
        return DEFAULT_LIFETIME
    try:
        micros = duration_us(text)
    except BadRequestData:
        raise BadRequestData(f"entityMapLifetime must be an ISO 8601 duration, got {text!r}") from None
    return min(timedelta(microseconds=micros), MAX_LIFETIME)


def wanted(params: Any) -> bool:
    """Whether a query asks for an EntityMap (entityMap=true); BadRequestData for a value not a boolean."""
    text = params.get("entityMap")
    if text is None:
        return False
    text = str(text)
    if text.lower() not in ("true", "false"):
        raise BadRequestData(f"entityMap must be true or false, got {text!r}")
    return text.lower() == "true"


def location(map_id: str) -> str:
    """The resource path of an EntityMap (the NGSILD-EntityMap header value)."""
    return PATH + quote(map_id, safe=":/")


def id_of_header(value: str) -> str:
    """The EntityMap id an NGSILD-EntityMap request header names (its resource URI, or the bare id)."""
    text = value.strip()
    at = text.find(PATH)
    if at >= 0:
        text = unquote(text[at + len(PATH):])
    return check_uri(text, "NGSILD-EntityMap")


class EntityMaps:
    """Create, look up, update and delete EntityMaps in the store's registry."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, tenant: str, entity_map: dict[str, list[str]], linked: dict[str, str],
                     lifetime: timedelta) -> dict[str, Any]:
        """Store a new EntityMap; its representation (5.2.39)."""
        map_id = f"urn:ngsi-ld:EntityMap:{uuid.uuid4()}"
        doc = {"expiresAt": _iso(_now() + lifetime), "entityMap": entity_map, "linkedMaps": linked}
        await self.store.registry_put(RegistryDoc(KIND, tenant, map_id, doc, None, {}), create=True)
        return present(map_id, doc)

    async def get(self, tenant: str, map_id: str) -> dict[str, Any]:
        """The EntityMap; ResourceNotFound when unknown or expired (an expired one is deleted)."""
        check_uri(map_id, "EntityMap id")
        item = await self.store.registry_get(KIND, tenant, map_id)
        if item is None:
            raise ResourceNotFound(f"no EntityMap {map_id}")
        if parse_datetime(item.doc["expiresAt"], "expiresAt") <= _now():
            await self.store.registry_delete(KIND, tenant, map_id)
            raise ResourceNotFound(f"EntityMap {map_id} expired at {item.doc['expiresAt']}")
        return present(map_id, item.doc)

    async def update(self, tenant: str, map_id: str, fragment: Any) -> None:
        """Update EntityMap (5.14.2): expiresAt is the one member a consumer sets; output-only members are ignored."""
        if not isinstance(fragment, dict):
            raise BadRequestData("an EntityMap fragment must be a JSON object")
        current = await self.get(tenant, map_id)
        if "id" in fragment and fragment["id"] != map_id:
            raise BadRequestData("the id of an EntityMap cannot be changed")
        if "type" in fragment and fragment["type"] != "EntityMap":
            raise BadRequestData("the type of an EntityMap is EntityMap")
        doc = {k: current[k] for k in ("expiresAt", "entityMap", "linkedMaps")}
        if "expiresAt" in fragment:
            doc["expiresAt"] = _iso(parse_datetime(fragment["expiresAt"], "expiresAt"))
        await self.store.registry_put(RegistryDoc(KIND, tenant, map_id, doc, None, {}), create=False)

    async def delete(self, tenant: str, map_id: str) -> None:
        """Delete EntityMap (5.14.3); ResourceNotFound when unknown (or expired)."""
        await self.get(tenant, map_id)
        await self.store.registry_delete(KIND, tenant, map_id)


def present(map_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The EntityMap data type (5.2.39)."""
    return {"id": map_id, "type": "EntityMap", "expiresAt": doc["expiresAt"],
            "entityMap": doc.get("entityMap") or {}, "linkedMaps": doc.get("linkedMaps") or {}}


def build(local_ids: list[str], sources: dict[str, list[str]]) -> dict[str, list[str]]:
    """entityMap (Table 5.2.39-2): each entity id with "@none" (held here) and the registrations that answered it."""
    out: dict[str, list[str]] = {}
    for entity_id in local_ids:
        out.setdefault(entity_id, []).append(LOCAL)
    for entity_id, regs in sources.items():
        held = out.setdefault(entity_id, [])
        held += [r for r in regs if r not in held]
    return dict(sorted(out.items()))


def maps(request: Request) -> EntityMaps:
    """The EntityMaps of the app serving the request."""
    state: BrokerState = request.app.state.broker  # as broker.state.broker_state reads it
    return EntityMaps(state.store)


async def asked_for(request: Request, tenant: str, params: Any) -> tuple[bool, dict[str, Any] | None]:
    """(make a new EntityMap, the EntityMap the NGSILD-EntityMap request header names) for the operations whose
    text says a named map that "cannot be found, or the data has expired" is replaced by a new one (5.7.1.4
    Retrieve Entity, 5.7.4.4 Query Temporal); BadRequestData for an entityMap value not a boolean."""
    make_map = wanted(params)
    header = request.headers.get(HEADER)
    if header is None:
        return make_map, None
    try:
        return make_map, await maps(request).get(tenant, id_of_header(header))
    except ResourceNotFound:
        return True, None
