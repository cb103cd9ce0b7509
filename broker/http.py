"""HTTP binding rules shared by every endpoint (clauses 6.3.4-6.3.6).

- request preconditions: Content-Type application/json, application/ld+json
  (and merge-patch+json for PATCH), else a bare 415; Accept must allow
  application/json, application/ld+json (or geo+json on entity reads), else
  406 with the available types;
- where the @context comes from: the Link header for GET/DELETE and
  application/json bodies, the body's "@context" for application/ld+json,
  and BadRequestData for every mix the spec forbids;
- responses: a Link header to the request's @context for application/json,
  "@context" in the body for application/ld+json, no Link on errors, 204
  without a body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from broker import limits
from broker.body_limits import fits
from models.errors import BadRequestData, InvalidRequest, NgsiLdError
from models.media import GEO_JSON, JSON, JSON_LD, LINK_REL

__all__ = ["GEO_JSON", "JSON", "JSON_LD", "LINK_REL", "MERGE_PATCH", "Incoming", "MediaTypeError", "accepted_type",
           "json_response", "link_context", "link_header", "link_url", "no_content", "problem_response", "read_body",
           "with_body_context"]

MERGE_PATCH = "application/merge-patch+json"

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


class MediaTypeError(Exception):
    """Raised for 415/406, which the spec wants without a ProblemDetails body (415) or with the offered types (406)."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(slots=True)
class Incoming:
    """What a handler needs from a request: the parsed body and the @context value to resolve."""

    body: Any
    context: Any  # None (core only), a URL, an inline object or a list
    content_type: str


def _media(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def link_context(request: Request) -> str | None:
    """The @context URL named by a JSON-LD Link header, if any (JSON-LD 1.1, section 6.2)."""
    return link_url(request.headers.get("link"))


def link_url(header: str | None) -> str | None:
    """`link_context` of a Link header's text (/v2/notify reads its headers from the scope: issue 16, notifyfast21)."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2)
        if LINK_REL in params:
            return match.group(1).strip()
    return None


async def read_body(request: Request, *, patch: bool = False, required: bool = True, batch: bool = False) -> Incoming:
    """Check Content-Type, parse the JSON body and find the request's @context (clause 6.3.5).

    `batch`: an array body is a batch whose entities each bring their own @context (or none, with
    application/json); the caller checks them one by one, so that one entity's fault is that entity's
    error in a 207, not the whole request's.
    """
    ctype = _media(request.headers.get("content-type"))
    allowed = (JSON, JSON_LD, MERGE_PATCH) if patch else (JSON, JSON_LD)
    raw = await request.body()
    if not raw and not required:
        return Incoming(None, link_context(request), ctype or JSON)
    if ctype not in allowed:
        raise MediaTypeError(415)
    if not raw:
        raise InvalidRequest("the request has no body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) and not (batch and isinstance(body, list)):
        # wrong content for the operation (clause 6.3.2): checked before what the @context rules say of it
        raise InvalidRequest(f"the body must be a JSON {'array or ' if batch else ''}object, got {_json_kind(body)}")
    nul = b"\\u0000" in raw
    if nul or len(raw) >= limits.small_body():  # a smaller body cannot be past a limit
        check_limits(body, nul=nul)
    link = link_context(request)
    if batch and isinstance(body, list):
        if ctype == JSON_LD and link is not None:
            raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
        return Incoming(body, link, ctype)
    assert isinstance(body, dict)  # an array was a batch's, above
    if ctype == JSON_LD:
        if link is not None:
            raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
        context = body.get("@context")
        if context is None:
            raise BadRequestData("an application/ld+json body must carry an @context")
        return Incoming(body, context, ctype)
    if "@context" in body:
        raise BadRequestData("an application/json body must not carry an @context; use a Link header")
    return Incoming(body, link, ctype)


_NOT_ATTRIBUTES = frozenset(("id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"))


def check_limits(body: Any, *, nul: bool = True) -> None:
    """BadRequestData when a parsed body is past a limit of broker.limits (issue 17).

    A batch's entity count; each entity's (or subscription's) id length in UTF-8 bytes and its attribute
    count; the nesting of objects and arrays; and a NUL character (U+0000) in any string or member name,
    which PostgreSQL cannot store (refused on both stores alike). `nul=False` skips the last when the raw
    body cannot hold one (JSON writes it `\\u0000`).
    """
    bound = limits.current()
    items = body if isinstance(body, list) else [body]
    if isinstance(body, list) and len(body) > bound.max_batch_entities:
        raise BadRequestData(f"the batch holds {len(body)} entities; at most {bound.max_batch_entities} are allowed")
    for item in items:
        if not isinstance(item, dict):
            continue
        eid = item.get("id")
        if isinstance(eid, str) and len(eid) * 4 > bound.max_id_bytes and len(eid.encode()) > bound.max_id_bytes:
            raise BadRequestData(f"the id is {len(eid.encode())} bytes long; at most {bound.max_id_bytes} are allowed")
        if len(item) > bound.max_attributes and len(item.keys() - _NOT_ATTRIBUTES) > bound.max_attributes:
            raise BadRequestData(f"the entity has {len(item.keys() - _NOT_ATTRIBUTES)} attributes; "
                                 f"at most {bound.max_attributes} are allowed")
    if fits(body, bound, nul):
        return  # nearly always: the walk below finds nothing (one pass by recursion, broker.body_limits)
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > bound.max_depth:
            raise BadRequestData(f"the body nests objects and arrays more than {bound.max_depth} deep")
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict) and isinstance(value.get("coordinates"), list) and "type" in value:
            _check_positions(value["coordinates"], bound.max_geometry_points)
        if nul and isinstance(value, dict) and any("\x00" in k for k in value):
            raise BadRequestData("a member name holds a NUL character (U+0000)")
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif nul and isinstance(child, str) and "\x00" in child:
                raise BadRequestData("a string holds a NUL character (U+0000), which the store cannot keep")


def _check_positions(coordinates: list[Any], bound: int) -> None:
    """BadRequestData when a GeoJSON geometry of a body has more than `bound` positions (two numbers each)."""
    numbers, stack = 0, [coordinates]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            numbers += 1
            if numbers > 2 * bound:
                raise BadRequestData(f"a geometry has more than {bound} positions "
                                     "(METROPOLE_BROKER_MAX_GEOMETRY_POINTS)")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def accepted_type(request: Request, *, geo: bool = False) -> str:
    """The response media type chosen from Accept (clause 6.3.4), or 406."""
    header = request.headers.get("accept")
    if not header:
        return JSON
    offered = [JSON, JSON_LD, GEO_JSON] if geo else [JSON, JSON_LD]
    best: tuple[float, int, str] | None = None
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        for rank, candidate in enumerate(offered):
            if media in (candidate, "*/*", "application/*") and q > 0:
                key = (-q, rank, candidate)
                if best is None or key < best:
                    best = key
    if best is None:
        raise MediaTypeError(406, orjson.dumps({"available": offered}))
    return best[2]


def json_response(
    payload: Any,
    *,
    status: int = 200,
    media: str = JSON,
    context: Any = None,
    headers: dict[str, str] | None = None,
    body_context: bool | None = None,
) -> Response:
    """A JSON response carrying the @context as the spec asks for `media` (clause 6.3.6).

    `body_context` puts the @context in the body instead of a Link header
    (default: for application/ld+json only); GeoJSON responses choose with
    the Prefer header.
    """
    out_headers = dict(headers or {})
    if body_context if body_context is not None else media == JSON_LD:
        payload = with_body_context(payload, context)
    elif media in (JSON, GEO_JSON):
        out_headers["Link"] = link_header(context)
    return Response(orjson.dumps(payload), status_code=status, media_type=media, headers=out_headers)


def with_body_context(payload: Any, context: Any) -> Any:
    """Add "@context" to an entity or to each entity of a list (JSON-LD responses)."""
    ctx = context if context is not None else _core_url()
    if isinstance(payload, list):
        return [{**p, "@context": ctx} if isinstance(p, dict) else p for p in payload]
    if isinstance(payload, dict):
        return {**payload, "@context": ctx}
    return payload


def link_header(context: Any) -> str:
    """The Link header value for a response whose @context is `context`.

    A URL is linked as is; an inline context has no URL of its own, so the
    core context is linked (the broker hosts inline contexts under
    /ngsi-ld/v1/jsonldContexts when the client registers them).
    """
    url = context if isinstance(context, str) else _core_url()
    if isinstance(context, list) and context and all(isinstance(c, str) for c in context) and len(context) == 1:
        url = context[0]
    return f'<{url}>; rel="{LINK_REL}"; type="{JSON_LD}"'


def _core_url() -> str:
    from models.context import CORE_CONTEXT_URL

    return CORE_CONTEXT_URL


def problem_response(error: NgsiLdError) -> Response:
    """An error as ProblemDetails, always application/json and without Link (clause 6.3.6)."""
    return Response(orjson.dumps(error.to_problem()), status_code=error.status, media_type=JSON)


def no_content(headers: dict[str, str] | None = None) -> Response:
    """204 without a body or Content-Length (clause 6.3.6)."""
    response = Response(status_code=204, headers=headers)
    if "content-length" in response.headers:
        del response.headers["content-length"]
    return response
