"""Distributed subscriptions (clause 5.8.1.4, localOnly=false; operations of Table 4.20-2).

A subscription created here is also created at every registered source whose registration
matches its entities and offers createSubscription (federationOps does): a copy of the
subscription, with an id of its own and this broker's relay endpoint as notification endpoint
(on the public URL, METROPOLE_BROKER_PUBLIC_URL, when set; else http://HOST:PORT).
Notifications arriving at the relay endpoint are sent on to the original subscriber with the
original subscription id; deleting the subscription here deletes the copies.

Simplifications (see the README "Federation" section): copies are made when the subscription is
created (registrations created later do not get one), an update here is not forwarded, the mapping
lives in this process's memory (a restart forgets it: relayed notifications then stop), and the relay
posts once over HTTP(S) (no durable queue; an MQTT subscriber endpoint is not relayed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.federation import matching
from broker.federation.consumption import app_forwarder, forwarder
from broker.federation.forward import Target
from models.context import Context
from models.media import API

if TYPE_CHECKING:  # broker.state imports this module: a run-time import back would be a cycle
    from broker.state import BrokerState

log = logging.getLogger(__name__)

RELAY_PATH = "/federation/notify"


@dataclass(slots=True)
class Relayed:
    """One subscription of this broker copied to sources: where its notifications go, and the copies."""

    tenant: str
    sub_id: str
    endpoint: dict[str, Any]
    copies: list[tuple[Target, str]] = field(default_factory=list)


class SubscriptionRelay:
    """The copies of this broker's subscriptions at registered sources, by relay token."""

    def __init__(self) -> None:
        self.by_token: dict[str, Relayed] = {}
        self.by_sub: dict[tuple[str, str], str] = {}

    async def created(self, request: Request, tenant: str, sub_id: str, body: dict[str, Any], context_value: Any,
                      ctx: Context) -> None:
        """Copy a new subscription to the matching sources offering createSubscription (5.8.1.4)."""
        fwd = forwarder(request)
        endpoint = (body.get("notification") or {}).get("endpoint") or {}
        if fwd is None or body.get("localOnly") is True or not str(endpoint.get("uri", "")).startswith("http"):
            return
        ents = body.get("entities") or []
        types = {ctx.expand_term(t) for e in ents if isinstance(e, dict) for t in _types(e.get("type"))}
        ids = {e["id"] for e in ents if isinstance(e, dict) and isinstance(e.get("id"), str)}
        wanted = matching.Wanted(ids=frozenset(ids), types=frozenset(types))
        plan = await fwd.plan(tenant, "createSubscription", wanted, request.headers.get("via"),
                              modes=("inclusive", "exclusive", "redirect"))
        if not plan.targets:
            return
        token = secrets.token_urlsafe(16)
        relayed = Relayed(tenant, sub_id, dict(endpoint))
        relay_uri = f"{fwd.public_url}{API}{RELAY_PATH}/{token}"
        copy_base = {k: v for k, v in body.items() if k not in ("id", "localOnly")}
        copy_base["notification"] = {**(body.get("notification") or {}),
                                     "endpoint": {"uri": relay_uri, "accept": endpoint.get("accept",
                                                                                          "application/json")}}

        async def copy_to(t: Target) -> None:
            copy_id = f"urn:ngsi-ld:Subscription:relay-{uuid.uuid4()}"
            reply = await fwd.send(t, "POST", "/subscriptions", body={"id": copy_id, **copy_base},
                                   request_headers=request.headers, context_value=context_value)
            if reply.status == 201:
                relayed.copies.append((t, copy_id))
            else:
                log.warning("subscription %s not created at %s (registration %s): %s", sub_id, t.endpoint,
                            t.item.id, reply.error or reply.status)

        await asyncio.gather(*(copy_to(t) for t in plan.targets))
        if relayed.copies:
            self.by_token[token] = relayed
            self.by_sub[(tenant, sub_id)] = token

    async def deleted(self, request: Request, tenant: str, sub_id: str) -> None:
        """Delete the copies of a deleted subscription at their sources."""
        token = self.by_sub.pop((tenant, sub_id), None)
        relayed = self.by_token.pop(token, None) if token else None
        fwd = app_forwarder(request) if relayed else None
        if relayed is None or fwd is None:
            return
        await asyncio.gather(*(fwd.send(t, "DELETE", f"/subscriptions/{copy_id}", request_headers=request.headers,
                                        context_value=None) for t, copy_id in relayed.copies))

    async def relay(self, token: str, body: bytes, content_type: str) -> bool:
        """Send a source's notification on to the original subscriber; False for an unknown token."""
        relayed = self.by_token.get(token)
        if relayed is None:
            return False
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True  # nothing to relay; the source is not asked to retry garbage
        if isinstance(doc, dict):
            doc["subscriptionId"] = relayed.sub_id
        headers = {"Content-Type": content_type or "application/json"}
        for info in relayed.endpoint.get("receiverInfo") or []:
            if isinstance(info, dict) and isinstance(info.get("key"), str):
                headers[info["key"]] = str(info.get("value", ""))
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(relayed.endpoint["uri"], content=orjson.dumps(doc), headers=headers)
        except (httpx.HTTPError, OSError):
            log.warning("relayed notification of %s to %s failed", relayed.sub_id, relayed.endpoint.get("uri"))
        return True


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t for t in value.replace("|", ",").replace(";", ",").replace("(", "").replace(")", "").split(",")
                if t]
    return []


def relay_of(request: Request) -> SubscriptionRelay:
    """`BrokerState.subscription_relay` of the app serving the request (as broker.state.broker_state reads it)."""
    state: BrokerState = request.app.state.broker
    return state.subscription_relay


router = APIRouter(prefix=API)


@router.post(RELAY_PATH + "/{token}", include_in_schema=False)
async def relay_notification(token: str, request: Request) -> Response:
    """A source's notification for a copied subscription: sent on to the subscriber (204), 404 if unknown."""
    known = await relay_of(request).relay(token, await request.body(), request.headers.get("content-type", ""))
    return Response(status_code=204 if known else 404)
