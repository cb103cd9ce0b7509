"""The CSourceRegistration data type (clauses 5.2.9, 5.2.10, 5.2.11, 4.3.6, 4.20): validation and PATCH merge.

A registration is kept as its creator wrote it (its terms) beside the
@context value of the request, as subscriptions are (broker.subscriptions);
`expand` gives the IRI form the matching works on, `recontext` the terms of
another reader. Read-only members (status, timesSent, ...; Table 5.2.9-2)
are never taken from a client.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from models.errors import BadRequestData, InvalidGeometry
from models.geojson import parse_geometry
from models.normalize import TermMapper
from models.times import now_utc, parse_utc
from models.validation import check_uri
from models.vocabulary import NGSI_LD_NULL

MODES = ("inclusive", "exclusive", "redirect", "auxiliary")
READ_ONLY = frozenset({"status", "timesSent", "timesFailed", "lastSuccess", "lastFailure", "createdAt",
                       "modifiedAt", "@context"})
STAT_MEMBERS = ("timesSent", "timesFailed", "lastSuccess", "lastFailure")

# clause 4.20, Tables 4.20-1 and 4.20-2
PROVISION_OPS = ("createEntity", "updateEntity", "appendAttrs", "updateAttrs", "deleteAttrs", "deleteEntity",
                 "createBatch", "upsertBatch", "updateBatch", "deleteBatch", "upsertTemporal", "appendAttrsTemporal",
                 "deleteAttrsTemporal", "updateAttrInstanceTemporal", "deleteAttrInstanceTemporal", "deleteTemporal",
                 "mergeEntity", "replaceEntity", "replaceAttrs", "mergeBatch", "purgeEntity")
CONSUMPTION_OPS = ("retrieveEntity", "queryEntity", "queryBatch", "retrieveTemporal", "queryTemporal",
                   "retrieveEntityTypes", "retrieveEntityTypeDetails", "retrieveEntityTypeInfo", "retrieveAttrTypes",
                   "retrieveAttrTypeDetails", "retrieveAttrTypeInfo")
SUBSCRIPTION_OPS = ("createSubscription", "updateSubscription", "retrieveSubscription", "querySubscription",
                    "deleteSubscription")
SUPPORT_OPS = ("retrieveEntityMap", "updateEntityMap", "deleteEntityMap", "createEntityMapQueryEntity",
               "createEntityMapQueryTemporal", "retrieveContextSourceIdentity")
_DISCOVERY = CONSUMPTION_OPS[5:]
GROUPS: dict[str, tuple[str, ...]] = {
    "federationOps": ("retrieveEntity", "queryEntity", "queryBatch", *_DISCOVERY, *SUBSCRIPTION_OPS,
                      "retrieveEntityMap", "updateEntityMap", "deleteEntityMap", "createEntityMapQueryEntity",
                      "retrieveContextSourceIdentity"),
    "associationOps": ("retrieveEntity", "queryEntity", "queryBatch", *_DISCOVERY, *SUBSCRIPTION_OPS,
                       "retrieveContextSourceIdentity"),
    "updateOps": ("updateEntity", "updateAttrs", "replaceEntity", "replaceAttrs"),
    "retrieveOps": ("retrieveEntity", "queryEntity"),
    "redirectionOps": ("createEntity", "updateEntity", "appendAttrs", "updateAttrs", "deleteAttrs", "deleteEntity",
                       "mergeEntity", "replaceEntity", "replaceAttrs", "retrieveEntity", "queryEntity", "purgeEntity",
                       *_DISCOVERY, "retrieveEntityMap", "updateEntityMap", "deleteEntityMap",
                       "createEntityMapQueryEntity", "retrieveContextSourceIdentity"),
}
OPERATIONS = frozenset((*PROVISION_OPS, *CONSUMPTION_OPS, *SUBSCRIPTION_OPS, *SUPPORT_OPS))
AUXILIARY_OPS = frozenset({"retrieveOps", "retrieveEntity", "queryEntity"})
_MIME = frozenset({"application/json", "application/ld+json"})
_VERSION = re.compile(r"^\d+\.\d+$")


def operations_of(doc: dict[str, Any]) -> frozenset[str]:
    """The operation names a registration offers, groups unfolded (default federationOps, clause 4.20;
    retrieveOps for an auxiliary registration, which takes consumption operations only, 4.3.6.2)."""
    out: set[str] = set()
    default = ["retrieveOps"] if doc.get("mode") == "auxiliary" else ["federationOps"]
    for name in doc.get("operations") or default:
        out.update(GROUPS.get(name, (name,)))
    return frozenset(out)


def _string(value: Any, member: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise BadRequestData(f"{member} must be a non-empty string")
    return value


def _names(value: Any, member: str) -> None:
    if not isinstance(value, list) or not value:
        raise BadRequestData(f"{member} must be a non-empty array of names")
    for name in value:
        _string(name, f"{member}[]")


def _entity_info(info: Any) -> None:
    if not isinstance(info, dict):
        raise BadRequestData("information[].entities must hold EntityInfo objects")
    unknown = set(info) - {"id", "idPattern", "type"}
    if unknown:
        raise BadRequestData(f"unknown EntityInfo member(s) {sorted(unknown)}")
    if "type" not in info:
        raise BadRequestData("an EntityInfo needs a type")
    types = info["type"] if isinstance(info["type"], list) else [info["type"]]
    if not types:
        raise BadRequestData("an EntityInfo type must not be empty")
    for t in types:
        _string(t, "information[].entities[].type")
    if "id" in info:
        check_uri(_string(info["id"], "information[].entities[].id"), "information[].entities[].id")
    if "idPattern" in info:
        try:
            re.compile(_string(info["idPattern"], "information[].entities[].idPattern"))
        except re.error as exc:
            raise BadRequestData(f"idPattern {info['idPattern']!r} is not a valid regular expression: {exc}") from None


def _information(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise BadRequestData("information must be a non-empty array of RegistrationInfo")
    for item in value:
        if not isinstance(item, dict) or not item:
            raise BadRequestData("a RegistrationInfo must be an object with entities, propertyNames or relationshipNames")
        unknown = set(item) - {"entities", "propertyNames", "relationshipNames"}
        if unknown:
            raise BadRequestData(f"unknown RegistrationInfo member(s) {sorted(unknown)}")
        if "entities" in item:
            if not isinstance(item["entities"], list) or not item["entities"]:
                raise BadRequestData("information[].entities must be a non-empty array")
            for info in item["entities"]:
                _entity_info(info)
        for member in ("propertyNames", "relationshipNames"):
            if member in item:
                _names(item[member], f"information[].{member}")


def _interval(value: Any, member: str) -> None:
    if not isinstance(value, dict) or "startAt" not in value or set(value) - {"startAt", "endAt"}:
        raise BadRequestData(f"{member} must be a TimeInterval {{startAt, endAt}}")
    start = parse_utc(value["startAt"], f"{member}.startAt")
    if "endAt" in value and parse_utc(value["endAt"], f"{member}.endAt") < start:
        raise BadRequestData(f"{member}.endAt is before its startAt")


def _context_source_info(value: Any) -> None:
    """KeyValuePair[] with the restrictions of clause 4.3.6.6 on its well-known keys."""
    if not isinstance(value, list):
        raise BadRequestData("contextSourceInfo must be an array of {key, value} objects")
    for kv in value:
        if (not isinstance(kv, dict) or set(kv) != {"key", "value"} or not isinstance(kv["key"], str)
                or not isinstance(kv["value"], str) or not kv["key"]):
            raise BadRequestData(f"contextSourceInfo: {kv!r} is not a {{key, value}} pair of strings")
        key, val = kv["key"], kv["value"]
        if key in ("accept", "contentType") and val not in _MIME:
            raise BadRequestData(f"contextSourceInfo {key} must be application/json or application/ld+json")
        if key == "jsonldContext":
            check_uri(val, "contextSourceInfo jsonldContext")
        if key == "ngsildConformance" and not _VERSION.match(val):
            raise BadRequestData("contextSourceInfo ngsildConformance must be major.minor, e.g. 1.8")
        if key.lower() in ("ngsild-tenant", "tenant"):
            raise BadRequestData("the tenant goes in the registration's tenant member, not in contextSourceInfo")


def _endpoint(value: Any) -> None:
    text = _string(value, "endpoint")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequestData(f"endpoint {text!r} must be a dereferenceable http(s) URI")


def _geometry(value: Any, member: str) -> None:
    try:
        parse_geometry(value)
    except (InvalidGeometry, ValueError, TypeError, KeyError) as exc:
        raise BadRequestData(f"{member} must be a GeoJSON geometry: {exc}") from None


def validate(doc: dict[str, Any], *, now: datetime | None = None, check_expiry: bool = True) -> None:
    """Clause 5.2.9 on a whole registration; BadRequestData names the first member at fault."""
    if doc.get("type") != "ContextSourceRegistration":
        raise BadRequestData('a registration must have "type": "ContextSourceRegistration"')
    check_uri(_string(doc.get("id"), "id"), "registration id")
    if "information" not in doc:
        raise BadRequestData("a registration needs information")
    _information(doc["information"])
    if "endpoint" not in doc:
        raise BadRequestData("a registration needs an endpoint")
    _endpoint(doc["endpoint"])
    mode = doc.get("mode", "inclusive")
    if mode not in MODES:
        raise BadRequestData(f"mode must be one of {', '.join(MODES)}")
    if "operations" in doc:
        ops = doc["operations"]
        if not isinstance(ops, list) or not ops:
            raise BadRequestData("operations must be a non-empty array of operation names")
        for op in ops:
            if op not in OPERATIONS and op not in GROUPS:
                raise BadRequestData(f"unknown operation {op!r} (clause 4.20)")
    # without operations an auxiliary registration offers retrieveOps (operations_of), never unsafe ones
    if mode == "auxiliary" and "operations" in doc and not set(doc["operations"]) <= AUXILIARY_OPS:
        raise BadRequestData("an auxiliary registration offers only retrieveOps, retrieveEntity or queryEntity")
    if "contextSourceInfo" in doc:
        _context_source_info(doc["contextSourceInfo"])
    for member in ("contextSourceAlias", "description", "registrationName", "tenant", "refreshRate"):
        if member in doc:
            _string(doc[member], member)
    if "datasetId" in doc:
        ids = doc["datasetId"] if isinstance(doc["datasetId"], list) else [doc["datasetId"]]
        for ds in ids:
            if ds != "@none":
                check_uri(_string(ds, "datasetId"), "datasetId")
    if "scope" in doc:
        scopes = doc["scope"] if isinstance(doc["scope"], list) else [doc["scope"]]
        for s in scopes:
            _string(s, "scope")
    for member in ("location", "observationSpace", "operationSpace"):
        if member in doc:
            _geometry(doc[member], member)
    for member in ("observationInterval", "managementInterval"):
        if member in doc:
            _interval(doc[member], member)
    if "management" in doc and not isinstance(doc["management"], dict):
        raise BadRequestData("management must be a RegistrationManagementInfo object")
    if "expiresAt" in doc:
        moment = parse_utc(doc["expiresAt"], "expiresAt")
        if check_expiry and moment <= (now or now_utc()):
            raise BadRequestData("expiresAt is in the past")


def clean_input(body: Any) -> dict[str, Any]:
    """The members a client may set (read-only ones dropped); BadRequestData when not an object."""
    if not isinstance(body, dict):
        raise BadRequestData("a registration must be a JSON object")
    return {k: v for k, v in body.items() if k not in READ_ONLY}


def new_registration(body: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """A validated registration document from a create request (id generated when absent)."""
    doc = clean_input(body)
    doc.setdefault("id", f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}")
    validate(doc, now=now)
    return doc


def merge(current: dict[str, Any], fragment: Any, rename: Any = None) -> dict[str, Any]:
    """Apply a fragment (clauses 5.9.3.4, 5.5.8): members replaced whole, null deletes."""
    frag = clean_input(fragment)
    if "id" in frag and frag["id"] != current["id"]:
        raise BadRequestData("the id of a registration cannot be changed")
    if "type" in frag and frag["type"] != "ContextSourceRegistration":
        raise BadRequestData('a fragment must have "type": "ContextSourceRegistration" when it has a type')
    if not frag or set(frag) <= {"id", "type"}:
        raise BadRequestData("the fragment changes nothing")
    if rename is not None:
        frag = rename(frag)
    out = dict(current)
    for key, value in frag.items():
        if value is None or value == NGSI_LD_NULL:
            if key in ("information", "endpoint"):
                raise BadRequestData(f"{key} is mandatory and cannot be removed")
            out.pop(key, None)
        else:
            out[key] = value
    validate(out, check_expiry="expiresAt" in frag)
    return out


def status_of(doc: dict[str, Any], stats: dict[str, Any]) -> str:
    """ok, or failed when the last distributed operation failed (Table 5.2.9-2)."""
    return str(stats.get("status", "ok"))


CORE_MEMBERS = frozenset({"id", "type", "information", "endpoint", "contextSourceInfo", "contextSourceAlias",
                           "description", "datasetId", "expiresAt", "location", "management", "managementInterval",
                           "mode", "observationInterval", "observationSpace", "operations", "operationSpace",
                           "refreshRate", "registrationName", "scope", "tenant", "status", *STAT_MEMBERS})


def map_terms(doc: dict[str, Any], fn: Any) -> dict[str, Any]:
    """A copy with entity types, property/relationship names and extra member names passed through fn."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "information" and isinstance(value, list):
            value = [_map_info(item, fn) for item in value]
        out[key if key in CORE_MEMBERS or key.startswith("@") else fn(key)] = value
    return out


def _map_info(item: Any, fn: Any) -> Any:
    if not isinstance(item, dict):
        return item
    out = dict(item)
    if isinstance(item.get("entities"), list):
        out["entities"] = [
            {**e, "type": [fn(t) for t in e["type"]] if isinstance(e["type"], list) else fn(e["type"])}
            if isinstance(e, dict) and "type" in e else e
            for e in item["entities"]
        ]
    for member in ("propertyNames", "relationshipNames"):
        if isinstance(item.get(member), list):
            out[member] = [fn(n) if isinstance(n, str) else n for n in item[member]]
    return out


def expand(doc: dict[str, Any], ctx: TermMapper) -> dict[str, Any]:
    """The registration with IRIs in place of terms (what matching compares)."""
    return map_terms(doc, ctx.expand_term)


def recontext(doc: dict[str, Any], source: TermMapper, target: TermMapper) -> dict[str, Any]:
    """Terms written in `source` re-expressed in `target` (IRIs where target has no term)."""
    return map_terms(doc, lambda t: target.compact_iri(source.expand_term(t)))
