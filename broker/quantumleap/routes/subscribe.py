"""POST /v2/subscribe: create the broker subscription that feeds this history.

QuantumLeap 0.8 had it (reporter.py `subscribe`, subscription_builder.py,
removed from 1.0.0 by PR #493): it probed `orionUrl`, built an NGSI-v2
subscription of `entityType`/`entityId`/`idPattern`, watched attributes
(`observedAttributes`, else `attributes`), notified attributes
(`notifiedAttributes`, else `attributes`), `throttling` and the
`Fiware-TimeIndex-Attribute` header, posted it to `<orionUrl>/subscriptions`
with the request's Fiware-Service/-ServicePath and answered Orion's status
and text. Kept here, with the same parameters, against:

- no `orionUrl` (and no METROPOLE_HISTORY_BROKER_URL): the embedded broker
  of this process, an NGSI-LD subscription created in place (201, Location);
- an `orionUrl` whose path holds /ngsi-ld/: an NGSI-LD broker (Orion-LD,
  this platform's), an NGSI-LD subscription;
- any other `orionUrl` (Orion's .../v2): the NGSI-v2 subscription of 0.8.

`quantumleapUrl` defaults to the /v2 URL this request reached.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from broker.quantumleap.errors import QLError, bad
from broker.quantumleap.params import split_list, write_tenant
from broker.quantumleap.routes.deps import service, settings
from models.context import SDM_ALL_CONTEXT_URL

router = APIRouter()
_TIMEOUT = 10.0


def _ngsi_ld_body(q: Any, ql_url: str, tenant: str, path: str | None) -> dict[str, Any]:
    etype, eid, pattern = q.get("entityType"), q.get("entityId"), q.get("idPattern")
    attrs = split_list(q.get("attributes"))
    watched = split_list(q.get("observedAttributes")) or attrs
    notified = split_list(q.get("notifiedAttributes")) or attrs
    if not etype and not watched:
        raise bad("an NGSI-LD subscription needs entityType or attributes")
    if (eid or pattern) and not etype:
        raise bad("entityId and idPattern need entityType in an NGSI-LD subscription")
    body: dict[str, Any] = {"type": "Subscription", "description": f"Created by QuantumLeap {ql_url}."}
    if etype:
        selector: dict[str, Any] = {"type": etype}
        if eid:
            selector["id"] = eid
        elif pattern:
            selector["idPattern"] = pattern
        body["entities"] = [selector]
    if watched:
        body["watchedAttributes"] = watched
    endpoint: dict[str, Any] = {"uri": f"{ql_url}/notify", "accept": "application/json"}
    info = [{"key": "Fiware-Service", "value": tenant}] if tenant else []
    if path:
        info.append({"key": "Fiware-ServicePath", "value": path})
    if q.get("timeIndexAttribute"):
        info.append({"key": "Fiware-TimeIndex-Attribute", "value": q["timeIndexAttribute"]})
    if info:
        endpoint["receiverInfo"] = info
    body["notification"] = {"format": "normalized", "endpoint": endpoint, **({"attributes": notified} if notified else {})}
    if q.get("throttling"):
        body["throttling"] = _throttling(q["throttling"])
    return body


def _v2_body(q: Any, ql_url: str) -> dict[str, Any]:
    """The subscription QuantumLeap 0.8 built (subscription_builder.py)."""
    attrs = split_list(q.get("attributes"))
    entity: dict[str, Any] = {}
    if q.get("entityType"):
        entity["type"] = q["entityType"]
    if q.get("entityId"):
        entity["id"] = q["entityId"]
    else:
        entity["idPattern"] = q.get("idPattern") or ".*"
    metadata = ["dateCreated", "dateModified", "TimeInstant", "timestamp"]
    notification: dict[str, Any] = {"url": f"{ql_url}/notify"}
    if q.get("timeIndexAttribute"):
        metadata.append(q["timeIndexAttribute"])
        notification = {"httpCustom": {"url": f"{ql_url}/notify",
                                       "headers": {"Fiware-TimeIndex-Attribute": q["timeIndexAttribute"]}}}
    notification["metadata"] = metadata
    notified = split_list(q.get("notifiedAttributes")) or attrs
    if notified:
        notification["attrs"] = notified
    body: dict[str, Any] = {"description": f"Created by QuantumLeap {ql_url}.",
                            "subject": {"entities": [entity], "condition": {"attrs": split_list(q.get("observedAttributes")) or attrs or []}},
                            "notification": notification}
    if q.get("throttling"):
        body["throttling"] = _throttling(q["throttling"])
    return body


def _throttling(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad(f"throttling must be a number of seconds, got {text!r}") from None
    if value < 0:
        raise bad(f"throttling must not be negative, got {value}")
    return value


@router.post("/subscribe")
async def subscribe(request: Request) -> Response:
    """Create the subscription; the broker's status and text come back (201 when created)."""
    q = request.query_params
    ql_url = q.get("quantumleapUrl") or str(request.url).split("?")[0].removesuffix("/subscribe")
    tenant = write_tenant(request)
    path = request.headers.get("fiware-servicepath")
    target = q.get("orionUrl") or settings(request).broker_url
    if target is None:
        svc = service(request)
        broker = svc.broker()
        body = _ngsi_ld_body(q, ql_url, tenant, path)
        sub_id = await broker.subscriptions.service.create(tenant, body, SDM_ALL_CONTEXT_URL, await svc.context())
        return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{sub_id}"})
    target = target.rstrip("/")
    async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
        try:
            probe = await client.get(target)
        except httpx.HTTPError:
            probe = None
        if probe is None or probe.status_code >= 500:
            raise QLError(400, "Bad Request", f"Orion is not reachable at {target}")
        if "/ngsi-ld/" in target + "/":
            headers = {"Content-Type": "application/ld+json"}
            if tenant:
                headers["NGSILD-Tenant"] = tenant
            payload = {**_ngsi_ld_body(q, ql_url, tenant, path), "@context": SDM_ALL_CONTEXT_URL}
        else:
            headers = {"Content-Type": "application/json"}
            if request.headers.get("fiware-service"):
                headers["Fiware-Service"] = request.headers["fiware-service"]
                if path:
                    headers["Fiware-ServicePath"] = path
            payload = _v2_body(q, ql_url)
        answer = await client.post(f"{target}/subscriptions", json=payload, headers=headers)
    out = Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))
    if "location" in answer.headers:
        out.headers["Location"] = answer.headers["location"]
    return out
