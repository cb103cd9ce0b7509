"""/jsonldContexts and /jsonldContexts/{contextId} (clauses 5.13, 6.29, 6.30).

The inventory is the ContextResolver's; hosted contexts are also written to
the store (shared by all tenants) so that they survive a restart with the
same local id, and `restore_hosted` puts them back at startup.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.api import deps
from broker.api.deps import API
from broker.http import JSON, MediaTypeError, accepted_type, no_content
from broker.service.patch import utc_now
from broker.state import broker_state
from broker.store.base import Store
from models.context import ContextResolver
from models.context.resolver import Kind
from models.errors import BadRequestData, InvalidRequest, LdContextNotAvailable, NgsiLdError, OperationNotSupported

router = APIRouter(prefix=f"{API}/jsonldContexts")

_KINDS: tuple[Kind, ...] = ("Cached", "Hosted", "ImplicitlyCreated")


class CachedNotServed(NgsiLdError):
    """Serving a Cached @context is refused with 422 (clause 6.30.3.1)."""

    problem_type = "OperationNotSupported"
    status = 422
    title = "Cached @context is not served"


async def restore_hosted(resolver: ContextResolver, store: Store, base_url: str) -> int:
    """Put the persisted hosted @contexts back into the resolver with their local ids; how many."""
    restored = 0
    for local_id, document, kind, _created in await store.get_contexts():
        restore = getattr(resolver, "restore", None)
        if restore is not None:
            restore(local_id, document, kind=kind)
        else:
            # The resolver has no public restore yet: re-host, then give the entry back its identity.
            new_id = resolver.host(document, implicit=kind == "ImplicitlyCreated")
            with resolver._lock:
                entry = resolver._by_id.pop(new_id)
                resolver._by_url.pop(entry.url, None)
                entry.local_id = local_id
                entry.url = f"{base_url}/{local_id}"
                resolver._store(entry)
        restored += 1
    return restored


@router.post("")
async def host_context(request: Request) -> Response:
    """Add @context (6.29.3.1): 201 + Location, 400."""
    deps.check_params(request)
    # The body's "@context" is the payload here, not the request's context: no read_body rules.
    if request.headers.get("content-type", "").split(";")[0].strip().lower() not in (JSON, "application/ld+json"):
        raise MediaTypeError(415)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    resolver = deps.resolver(request)
    local_id = await resolver.ahost(body)
    document = {"@context": body["@context"]}
    await broker_state(request).store.put_context(local_id, document, "Hosted", utc_now())
    return Response(status_code=201, headers={"Location": f"{API}/jsonldContexts/{quote(local_id, safe=':')}"})


@router.get("")
async def list_contexts(request: Request) -> Response:
    """List @contexts (6.29.3.2): URLs, or metadata objects with details=true; kind filters."""
    deps.check_params(request)
    accepted_type(request)
    kind = request.query_params.get("kind")
    selected = next((k for k in _KINDS if k == kind), None)
    if kind is not None and selected is None:
        raise BadRequestData(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    entries = deps.resolver(request).entries(selected)
    body: Any = entries if deps.flag(request, "details") else [e["URL"] for e in entries]
    return Response(orjson.dumps(body), media_type=JSON)


@router.get("/{context_id:path}")
async def serve_context(context_id: str, request: Request) -> Response:
    """Serve @context (6.30.3.1): the document, or its metadata with details=true; 404, 422 for Cached."""
    deps.check_params(request)
    resolver = deps.resolver(request)
    media = accepted_type(request)
    if deps.flag(request, "details"):
        return Response(orjson.dumps(resolver.entry(context_id)), media_type=JSON)
    try:
        document = resolver.get(context_id)
    except OperationNotSupported as error:
        raise CachedNotServed(error.detail) from None
    # a JSON object either way (6.30.3.1); application/json unless the client prefers JSON-LD (6.3.4's order)
    return Response(orjson.dumps(document), media_type=media)


@router.delete("/{context_id:path}")
async def delete_context(context_id: str, request: Request) -> Response:
    """Delete and Reload @context (6.30.3.2): 204, 400, 404, 504 when a reload download fails."""
    deps.check_params(request)
    resolver = deps.resolver(request)
    if deps.flag(request, "reload"):
        try:
            await resolver.areload(context_id)
        except LdContextNotAvailable as error:
            return Response(orjson.dumps({**error.to_problem(), "status": 504}), status_code=504, media_type=JSON)
        return no_content()
    entry = resolver.entry(context_id)
    resolver.delete(context_id)
    await broker_state(request).store.delete_context(entry["localId"])
    return no_content()
