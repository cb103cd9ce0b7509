"""The URL parameters and `options`/`format` values each NGSI-LD operation takes, and the check that refuses others.

Clause 6.3.20: a request carrying parameters incompatible with its
operation, or `options` values the operation does not support, is answered
InvalidRequest. A typo (`limt=1`, `options=keyvalues`) would otherwise give
a silent wrong answer. Orion-LD refuses unsupported URI parameters the same
way, before reading the tenant or the body (FIWARE/context.Orion-LD,
src/lib/orionld/mhd/mhdConnectionTreat.cpp, the `uriParamSupport` check).

The table is data: one `Operation` per (method, route path), its parameters
taken from the operation's URL parameter table in clause 6 plus the common
ones clause 6.3 adds (`local` 6.3.18, `format`/`options` 6.3.7 and 6.3.12,
`sysAttrs` 6.3.11, `limit`/`offset` 6.3.10, `count` 6.3.13,
`geometryProperty` 6.3.15). Handlers call `check_params` first, mostly
through `deps.read_context` and `deps.read_entity_body`, so it answers
before any body is read; a route missing from the table is not checked.
It is a plain call rather than a FastAPI dependency: the dependency
machinery measured about 30 us per request, the call a few (nothing
without a query string).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from models.errors import InvalidRequest
from models.media import API

__all__ = ["OPERATIONS", "Operation", "check_params"]


@dataclass(frozen=True, slots=True)
class Operation:
    """What one operation accepts in its URL: parameter names, `options` keywords and `format` values."""

    name: str
    params: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()
    formats: frozenset[str] = frozenset()


def _op(name: str, params: str = "", options: str = "", formats: str = "") -> Operation:
    return Operation(name, frozenset(params.split()), frozenset(options.split()), frozenset(formats.split()))


_REPRESENTATIONS = "normalized concise simplified keyValues"
_PAGING = "limit offset count"
_GEO = "georel geometry coordinates geoproperty"
_SELECT = f"id idPattern type attrs q scopeQ csf {_GEO}"
_LINKED = "join joinLevel containedBy entityMap entityMapLifetime"
_QUERY_ENTITIES = (f"{_SELECT} {_LINKED} datasetId pick omit lang geometryProperty expandValues jsonKeys "
                   f"orderBy orderFrom orderGeometry collation splitEntities format options local {_PAGING}")
_TEMPORAL_SELECT = ("datasetId pick omit lang timerel timeAt endTimeAt timeproperty lastN aggrMethods aggrPeriodDuration "
                    "expandValues jsonKeys splitEntities entityMap entityMapLifetime csf format options local")
_TEMPORAL_QUERY = f"{_SELECT} {_TEMPORAL_SELECT} orderBy collation {_PAGING}"
_TEMPORAL_OPTIONS = "temporalValues aggregatedValues sysAttrs"
_TEMPORAL_FORMATS = "normalized temporalValues aggregatedValues"

OPERATIONS: dict[tuple[str, str], Operation] = {
    # /entities (6.4), /entities/{entityId} (6.5)
    ("POST", "/entities"): _op("Create Entity (6.4.3.1)", "local"),
    ("GET", "/entities"): _op("Query Entities (6.4.3.2)", _QUERY_ENTITIES,
                              f"{_REPRESENTATIONS} sysAttrs", _REPRESENTATIONS),
    ("DELETE", "/entities"): _op("Purge Entities (6.4.3.3)", f"{_SELECT} geometryProperty keep drop local"),
    ("GET", "/entities/{entity_id}"): _op(
        "Retrieve Entity (6.5.3.1)",
        f"type attrs pick omit datasetId lang geometryProperty {_LINKED} format options local",
        f"{_REPRESENTATIONS} sysAttrs", _REPRESENTATIONS),
    ("DELETE", "/entities/{entity_id}"): _op("Delete Entity (6.5.3.2)", "type local"),
    ("PUT", "/entities/{entity_id}"): _op("Replace Entity (6.5.3.3)", "type local"),
    ("PATCH", "/entities/{entity_id}"): _op("Merge Entity (6.5.3.4)", "type format options lang observedAt local",
                                            "simplified keyValues normalized concise", _REPRESENTATIONS),
    # attributes (6.6, 6.7)
    ("POST", "/entities/{entity_id}/attrs"): _op("Append Attributes (6.6.3.1)", "type options local", "noOverwrite"),
    ("PATCH", "/entities/{entity_id}/attrs"): _op("Update Attributes (6.6.3.2)", "type local"),
    ("PATCH", "/entities/{entity_id}/attrs/{attr}"): _op("Partial Attribute Update (6.7.3.1)", "type datasetId local"),
    ("DELETE", "/entities/{entity_id}/attrs/{attr}"): _op("Delete Attribute (6.7.3.2)",
                                                          "type datasetId deleteAll local"),
    ("PUT", "/entities/{entity_id}/attrs/{attr}"): _op("Replace Attribute (6.7.3.3)", "type local"),
    # batch operations (6.14-6.17, 6.23, 6.31)
    ("POST", "/entityOperations/create"): _op("Batch Create (6.14.3.1)", "local"),
    ("POST", "/entityOperations/upsert"): _op("Batch Upsert (6.15.3.1)", "options local", "replace update"),
    ("POST", "/entityOperations/update"): _op("Batch Update (6.16.3.1)", "options local", "noOverwrite"),
    ("POST", "/entityOperations/delete"): _op("Batch Delete (6.17.3.1)", "local"),
    ("POST", "/entityOperations/merge"): _op("Batch Merge (6.31.3.1)", "local"),
    ("POST", "/entityOperations/query"): _op(
        "Query Entities via POST (6.23.3.1)", f"format options local geometryProperty lang {_LINKED} {_PAGING}",
        f"{_REPRESENTATIONS} sysAttrs", _REPRESENTATIONS),
    # discovery (6.25-6.28)
    ("GET", "/types"): _op("Retrieve Available Entity Types (6.25.3.1)", "details local"),
    ("GET", "/types/{type_name:path}"): _op("Retrieve Available Entity Type Information (6.26.3.1)", "local"),
    ("GET", "/attributes"): _op("Retrieve Available Attributes (6.27.3.1)", "details local"),
    ("GET", "/attributes/{attr:path}"): _op("Retrieve Available Attribute Information (6.28.3.1)", "local"),
    # @context management (6.29, 6.30)
    ("POST", "/jsonldContexts"): _op("Add @context (6.29.3.1)"),
    ("GET", "/jsonldContexts"): _op("List @contexts (6.29.3.2)", "details kind"),
    ("GET", "/jsonldContexts/{context_id:path}"): _op("Serve @context (6.30.3.1)", "details"),
    ("DELETE", "/jsonldContexts/{context_id:path}"): _op("Delete and Reload @context (6.30.3.2)", "reload"),
    # subscriptions (6.10, 6.11)
    ("POST", "/subscriptions"): _op("Create Subscription (6.10.3.1)"),
    ("GET", "/subscriptions"): _op("Query Subscriptions (6.10.3.2)", f"options {_PAGING}", "sysAttrs"),
    ("GET", "/subscriptions/{sub_id:path}"): _op("Retrieve Subscription (6.11.3.1)", "options", "sysAttrs"),
    ("PATCH", "/subscriptions/{sub_id:path}"): _op("Update Subscription (6.11.3.2)"),
    ("DELETE", "/subscriptions/{sub_id:path}"): _op("Delete Subscription (6.11.3.3)"),
    # context source registrations (6.8, 6.9) and their subscriptions (6.12, 6.13)
    ("POST", "/csourceRegistrations"): _op("Create Context Source Registration (6.8.3.1)"),
    ("GET", "/csourceRegistrations"): _op(
        "Query Context Source Registrations (6.8.3.2)",
        f"id idPattern type attrs q csf scopeQ {_GEO} timerel timeAt endTimeAt timeproperty options {_PAGING}",
        "sysAttrs"),
    ("GET", "/csourceRegistrations/{reg_id:path}"): _op("Retrieve Context Source Registration (6.9.3.1)",
                                                         "options", "sysAttrs"),
    ("PATCH", "/csourceRegistrations/{reg_id:path}"): _op("Update Context Source Registration (6.9.3.2)"),
    ("DELETE", "/csourceRegistrations/{reg_id:path}"): _op("Delete Context Source Registration (6.9.3.3)"),
    ("POST", "/csourceSubscriptions"): _op("Create Context Source Registration Subscription (6.12.3.1)"),
    ("GET", "/csourceSubscriptions"): _op("Query Context Source Registration Subscriptions (6.12.3.2)",
                                          f"options {_PAGING}", "sysAttrs"),
    ("GET", "/csourceSubscriptions/{sub_id:path}"): _op("Retrieve Context Source Registration Subscription (6.13.3.1)",
                                                        "options", "sysAttrs"),
    ("PATCH", "/csourceSubscriptions/{sub_id:path}"): _op("Update Context Source Registration Subscription (6.13.3.2)"),
    ("DELETE", "/csourceSubscriptions/{sub_id:path}"): _op("Delete Context Source Registration Subscription (6.13.3.3)"),
    # federation: EntityMaps (6.32, broker/federation/entitymaps.py)
    ("GET", "/entityMaps/{map_id:path}"): _op("Retrieve EntityMap (6.32.3.1)"),
    ("PATCH", "/entityMaps/{map_id:path}"): _op("Update EntityMap (6.32.3.2)"),
    ("DELETE", "/entityMaps/{map_id:path}"): _op("Delete EntityMap (6.32.3.3)"),
    # federation: where the copies of a subscription at registered sources notify (broker/federation/subs.py)
    ("POST", "/federation/notify/{token}"): _op("Relay of a notification from a registered source (5.8.1.4)"),
    # temporal (6.18-6.22, 6.24)
    ("POST", "/temporal/entities"): _op("Create or Update Temporal Evolution (6.18.3.1)", "local"),
    ("GET", "/temporal/entities"): _op("Query Temporal Evolution of Entities (6.18.3.2)", _TEMPORAL_QUERY,
                                       _TEMPORAL_OPTIONS, _TEMPORAL_FORMATS),
    ("POST", "/temporal/entityOperations/query"): _op(
        "Query Temporal Evolution via POST (6.24.3.1)",
        f"format options local aggrMethods aggrPeriodDuration lastN pick omit datasetId orderBy lang splitEntities "
        f"entityMap entityMapLifetime {_PAGING}", _TEMPORAL_OPTIONS, _TEMPORAL_FORMATS),
    ("GET", "/temporal/entities/{entity_id}"): _op(
        "Retrieve Temporal Evolution of an Entity (6.19.3.1)",
        f"attrs type {_TEMPORAL_SELECT}", _TEMPORAL_OPTIONS, _TEMPORAL_FORMATS),
    ("DELETE", "/temporal/entities/{entity_id}"): _op("Delete Temporal Evolution of an Entity (6.19.3.2)", "type local"),
    ("POST", "/temporal/entities/{entity_id}/attrs"): _op("Add Attributes to Temporal Evolution (6.20.3.1)", "local"),
    ("DELETE", "/temporal/entities/{entity_id}/attrs/{attr}"): _op(
        "Delete Attribute from Temporal Evolution (6.21.3.1)", "datasetId deleteAll local"),
    ("PATCH", "/temporal/entities/{entity_id}/attrs/{attr}/{instance_id}"): _op(
        "Modify Attribute Instance in Temporal Evolution (6.22.3.1)", "local"),
    ("DELETE", "/temporal/entities/{entity_id}/attrs/{attr}/{instance_id}"): _op(
        "Delete Attribute Instance from Temporal Evolution (6.22.3.2)", "local"),
}
"""Operations by (HTTP method, route path below /ngsi-ld/v1)."""

_BY_ROUTE: dict[tuple[str, str], Operation] = {(m, API + p): op for (m, p), op in OPERATIONS.items()}


def check_params(request: Request) -> None:
    """Refuse URL parameters, `options` keywords and `format` values the operation does not take (6.3.20)."""
    if not request.scope.get("query_string"):
        return  # the common case on hot paths: no query string, so no QueryParams parsed (issue 16, patch17)
    params = request.query_params
    if not params:
        return
    route = request.scope.get("route")
    op = _BY_ROUTE.get((request.method, getattr(route, "path", "")))
    if op is None:
        return
    for name in params:
        if name not in op.params:
            raise InvalidRequest(f"{op.name} takes no parameter {name!r}")
    for text in params.getlist("options"):
        for option in text.split(","):
            option = option.strip()
            if option and option not in op.options:
                allowed = ", ".join(sorted(op.options)) or "none"
                raise InvalidRequest(f"{op.name} does not support options={option} (supported: {allowed})")
    for fmt in params.getlist("format"):
        if fmt and fmt not in op.formats:
            raise InvalidRequest(f"{op.name} does not support format={fmt} (supported: {', '.join(sorted(op.formats))})")
