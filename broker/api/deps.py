"""What every handler needs: the tenant, the services, the request's resolved @context, rendering.

The services live on `app.state.broker` (broker.state, set by the lifespan in broker.app);
handlers take the raw `Request` and use these helpers rather than pydantic
models, so the hot paths (batch upsert, GET by id) parse JSON once, with orjson.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Header, Request

from broker.api.params import check_params
from broker.http import GEO_JSON, JSON, Incoming, accepted_type, json_response, link_context, read_body
from broker.service.batch import BatchService
from broker.service.discovery import DiscoveryService
from broker.service.entities import EntityService
from broker.service.queries import QueryService
from broker.settings import BrokerSettings
from broker.state import broker_state
from models.context import Context, ContextResolver
from models.errors import BadRequestData
from models.media import API
from models.validation import check_uri

TenantDep = Annotated[str, Header(alias="NGSILD-Tenant")]
"""The tenant of a request (clause 5.5.10); '' is the default tenant."""



def entities(request: Request) -> EntityService:
    """The entity service of this app."""
    return broker_state(request).entities


def batch(request: Request) -> BatchService:
    """The batch service of this app."""
    return broker_state(request).batch


def queries(request: Request) -> QueryService:
    """The query service of this app."""
    return broker_state(request).queries


def discovery(request: Request) -> DiscoveryService:
    """The discovery service of this app."""
    return broker_state(request).discovery


def settings(request: Request) -> BrokerSettings:
    """The settings of this app."""
    return broker_state(request).settings


def resolver(request: Request) -> ContextResolver:
    """The @context resolver of this app."""
    return broker_state(request).resolver


async def resolve(request: Request, value: Any) -> Context:
    """The active context for an @context value (memoised by the resolver).

    A reference to a context this broker hosts (`/ngsi-ld/v1/jsonldContexts/{id}`, relative to the
    request's URL as JSON-LD resolves relative references, or absolute) is looked up by its local id.
    """
    if value is not None:
        value = _own_references(request, value)
    return await resolver(request).aresolve(value)


_HOSTED = f"{API}/jsonldContexts/"


def _own_references(request: Request, value: Any) -> Any:
    if isinstance(value, str):
        if _HOSTED not in value:
            return value  # nearly always: no base URL is built
        if value.startswith((_HOSTED, str(request.base_url).rstrip("/") + _HOSTED)):
            return unquote(value[value.index(_HOSTED) + len(_HOSTED):])
        return value
    if isinstance(value, list):
        return [_own_references(request, v) for v in value]
    return value


async def read_context(request: Request) -> tuple[Any, Context]:
    """For bodiless requests: the Link header's @context value and its resolved Context.

    The URL parameters are checked first (broker.api.params), as for `read_entity_body`.
    """
    check_params(request)
    value = link_context(request)
    return value, await resolve(request, value)


async def read_entity_body(request: Request, *, patch: bool = False) -> tuple[Incoming, Context]:
    """The parsed body and the resolved @context of a request with a JSON body (URL parameters checked first)."""
    check_params(request)
    incoming = await read_body(request, patch=patch)
    return incoming, await resolve(request, incoming.context)


def entity_id(value: str) -> str:
    """A path entity id, checked to be a URI (BadRequestData otherwise)."""
    return check_uri(value, "entity id")


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter (true/false)."""
    text = request.query_params.get(name)
    if text is None:
        return False
    if text.lower() not in ("true", "false"):
        raise BadRequestData(f"{name} must be true or false, got {text!r}")
    return text.lower() == "true"


def options(request: Request) -> set[str]:
    """The `options` flags of a request."""
    return {o.strip() for o in request.query_params.get("options", "").split(",") if o.strip()}


def respond(request: Request, payload: Any, context_value: Any, *, status: int = 200, geo: bool = False,
            headers: dict[str, str] | None = None, media: str | None = None) -> Any:
    """A JSON response in the media type the client accepts, with the @context as that type wants."""
    chosen = media or accepted_type(request, geo=geo)
    return json_response(payload, status=status, media=chosen, context=context_value, headers=headers)


__all__ = ["API", "GEO_JSON", "JSON", "TenantDep", "accepted_type", "check_params", "json_response"]
