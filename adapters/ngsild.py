"""Client of any NGSI-LD broker (the embedded one, Orion-LD, Scorpio, Stellio) over HTTP.

Errors, drawn as a tree (everything is a `models.errors.NgsiLdError`):

    NgsiLdError                      the broker's own ProblemDetails, rebuilt by `from_problem`
    │                                (BadRequestData, ResourceNotFound, LdContextNotAvailable ...)
    └── InternalError
        └── BrokerUnavailable        no answer, timeout, 408/425/429, 5xx without ProblemDetails

`error_from_response` and `error_from_transport` are the one mapping from
the HTTP layer to that tree; `is_retryable` says which errors may succeed
later unchanged (the broker is away, slow or overloaded) and which are the
data's fault (4xx: retrying the same entity would fail the same way).

A batch answers with a `BatchOutcome`: the ids that succeeded and, per failed
entity, its error (clause 5.2.16, 207 Multi-Status). A failure of the whole
request raises instead.

The HTTP client is injected (`httpx.AsyncClient`, so tests can pass one with
a mock transport); the @context travels in the `Link` header when there is a
single non-core context, or inline (`application/ld+json`) when there are
several, since a request carries at most one JSON-LD Link header (6.3.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from models.context import is_core_context_url
from models.errors import InternalError, NgsiLdError, from_problem

__all__ = [
    "BatchMode",
    "BatchOutcome",
    "BrokerUnavailable",
    "NgsiLdClient",
    "error_from_response",
    "error_from_transport",
    "is_retryable",
]

API = "/ngsi-ld/v1"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
JSON = "application/json"
JSON_LD = "application/ld+json"

#: How measures are written: `update` = batch upsert with options=update (creates
#: missing entities, overwrites the attributes sent, keeps the others); `merge` =
#: batch merge (clause 5.6.20), falling back to upsert for entities that do not exist
#: yet; `replace` = batch upsert with options=replace (the entity becomes what was sent).
BatchMode = Literal["update", "merge", "replace"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})


class BrokerUnavailable(InternalError):
    """The broker did not answer usefully (connection refused, timeout, 5xx, 429): retry later."""

    title = "NGSI-LD broker unavailable"


def is_retryable(error: NgsiLdError) -> bool:
    """Whether the same request may succeed later: broker-side trouble, not bad data."""
    if isinstance(error, BrokerUnavailable):
        return True
    return error.status >= 500 or error.status in _RETRYABLE_STATUS


def error_from_transport(exc: httpx.HTTPError, url: str) -> BrokerUnavailable:
    """Map an httpx transport failure (refused, reset, timeout) to BrokerUnavailable."""
    kind = type(exc).__name__
    return BrokerUnavailable(f"{kind} on {url}: {exc}", instance=url)


def error_from_response(response: httpx.Response) -> NgsiLdError:
    """Map a non-2xx broker response to the most specific error (ProblemDetails when given)."""
    status = response.status_code
    body: Any = None
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and "type" in body:
        error = problem_error(body, status)
        if status >= 500 or status in _RETRYABLE_STATUS:
            if not is_retryable(error):  # e.g. a 503 whose body says BadRequestData: trust the status
                return BrokerUnavailable(error.detail, instance=str(response.request.url), status_code=status)
        return error
    text = response.text[:300] if response.content else ""
    detail = f"HTTP {status} from {response.request.url}" + (f": {text}" if text else "")
    if status >= 500 or status in _RETRYABLE_STATUS:
        return BrokerUnavailable(detail, instance=str(response.request.url))
    return from_problem({"type": _type_for_status(status), "detail": detail})


def problem_error(problem: Mapping[str, Any], status: int) -> NgsiLdError:
    """`from_problem`, but an error type we do not know keeps the status the broker gave it.

    Brokers add their own types (Orion-LD, Scorpio); a 4xx of an unknown type
    is still the data's fault and must not be retried as an InternalError would.
    """
    error = from_problem(dict(problem))
    given = problem.get("status", status)
    if type(error) is InternalError and isinstance(given, int) and 400 <= given < 500:
        return from_problem({**problem, "type": _type_for_status(given)})
    return error


def _type_for_status(status: int) -> str:
    return {
        400: "BadRequestData",
        404: "ResourceNotFound",
        409: "AlreadyExists",
        422: "BadRequestData",
        501: "OperationNotSupported",
    }.get(status, "InvalidRequest")


@dataclass(slots=True)
class BatchOutcome:
    """Result of one batch: ids that succeeded, ids newly created, (id, error) per failed entity."""

    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str, NgsiLdError]] = field(default_factory=list)

    def failed_ids(self) -> set[str]:
        """Ids of the entities that failed."""
        return {entity_id for entity_id, _ in self.errors}


def _non_core(context: Sequence[str] | str | None) -> list[str]:
    if context is None:
        return []
    urls = [context] if isinstance(context, str) else list(context)
    return [u for u in dict.fromkeys(urls) if not is_core_context_url(u)]


class NgsiLdClient:
    """Async client of one NGSI-LD broker's entity and batch operations.

    `base_url` is the broker's root (``http://host:1026``); `http` an injected
    `httpx.AsyncClient` (the client owns one it creates itself). `tenant_header`
    is ``NGSILD-Tenant`` for every NGSI-LD 1.x broker (Orion-LD, Scorpio, Stellio
    and ours); the empty tenant sends none, i.e. the default tenant.
    """

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        tenant_header: str = "NGSILD-Tenant",
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._tenant_header = tenant_header
        self._extra = dict(extra_headers or {})

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> NgsiLdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- requests ---------------------------------------------------------------

    def _headers(self, tenant: str, context: Sequence[str] | str | None, *, body: bool) -> tuple[dict[str, str], list[str]]:
        headers = {"Accept": JSON, **self._extra}
        if tenant:
            headers[self._tenant_header] = tenant
        urls = _non_core(context)
        inline: list[str] = []
        if len(urls) == 1:
            headers["Link"] = f'<{urls[0]}>; rel="{LINK_REL}"; type="{JSON_LD}"'
        elif len(urls) > 1:
            inline = urls
        if body:
            headers["Content-Type"] = JSON_LD if inline else JSON
        return headers, inline

    async def _send(
        self,
        method: str,
        path: str,
        *,
        tenant: str = "",
        context: Sequence[str] | str | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self.base_url}{API}{path}"
        headers, inline = self._headers(tenant, context, body=json_body is not None)
        content: bytes | None = None
        if json_body is not None:
            if inline:
                ctx = inline
                if isinstance(json_body, list):
                    json_body = [{**e, "@context": ctx} for e in json_body]
                else:
                    json_body = {**json_body, "@context": ctx}
            content = orjson.dumps(json_body)
        try:
            return await self._http.request(method, url, headers=headers, content=content, params=params,
                                            timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, url) from exc

    async def _batch(self, op: str, entities: Sequence[Mapping[str, Any]], tenant: str,
                     context: Sequence[str] | str | None, params: Mapping[str, str] | None = None) -> BatchOutcome:
        response = await self._send("POST", f"/entityOperations/{op}", tenant=tenant, context=context,
                                    json_body=list(entities), params=params)
        return _batch_outcome(response, entities)

    async def upsert(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                     context: Sequence[str] | str | None = None, replace: bool = False) -> BatchOutcome:
        """Batch Upsert (5.6.8): options=update (default) or replace."""
        params = {"options": "replace" if replace else "update"}
        return await self._batch("upsert", entities, tenant, context, params)

    async def update(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                     context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Batch Update (5.6.9): only existing entities; missing ones fail with ResourceNotFound."""
        return await self._batch("update", entities, tenant, context)

    async def merge(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                    context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Batch Merge (5.6.20): only existing entities; missing ones fail with ResourceNotFound."""
        return await self._batch("merge", entities, tenant, context)

    async def write(self, entities: Sequence[Mapping[str, Any]], *, mode: BatchMode = "update", tenant: str = "",
                    context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Write measures as `mode` says; `merge` creates the entities the broker does not have yet."""
        if mode == "update":
            return await self.upsert(entities, tenant=tenant, context=context)
        if mode == "replace":
            return await self.upsert(entities, tenant=tenant, context=context, replace=True)
        outcome = await self.merge(entities, tenant=tenant, context=context)
        missing = {i for i, e in outcome.errors if e.problem_type in {"ResourceNotFound", "NonexistentTenant"}}
        if not missing:
            return outcome
        retry = [e for e in entities if e.get("id") in missing]
        created = await self.upsert(retry, tenant=tenant, context=context)
        outcome.errors = [(i, e) for i, e in outcome.errors if i not in missing] + created.errors
        outcome.success += created.success
        outcome.created += created.created
        return outcome

    async def create_entity(self, entity: Mapping[str, Any], *, tenant: str = "",
                            context: Sequence[str] | str | None = None) -> None:
        """Create one entity (5.6.1)."""
        response = await self._send("POST", "/entities", tenant=tenant, context=context, json_body=dict(entity))
        if response.status_code != 201:
            raise error_from_response(response)

    async def get_entity(self, entity_id: str, *, tenant: str = "", context: Sequence[str] | str | None = None,
                         params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Retrieve one entity (5.7.1), normalized unless `params` says otherwise."""
        response = await self._send("GET", f"/entities/{entity_id}", tenant=tenant, context=context, params=params)
        if response.status_code != 200:
            raise error_from_response(response)
        return dict(orjson.loads(response.content))

    async def query(self, *, tenant: str = "", context: Sequence[str] | str | None = None,
                    params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Query entities (5.7.2) with the given query parameters (type, q, limit ...)."""
        response = await self._send("GET", "/entities", tenant=tenant, context=context, params=params)
        if response.status_code != 200:
            raise error_from_response(response)
        return list(orjson.loads(response.content))

    async def delete_entity(self, entity_id: str, *, tenant: str = "") -> None:
        """Delete one entity (5.6.6)."""
        response = await self._send("DELETE", f"/entities/{entity_id}", tenant=tenant)
        if response.status_code != 204:
            raise error_from_response(response)


def _batch_outcome(response: httpx.Response, entities: Sequence[Mapping[str, Any]]) -> BatchOutcome:
    """Read 201/204/207 (clause 6.14-6.31); anything else raises the whole request's error."""
    status = response.status_code
    ids = [str(e.get("id", "")) for e in entities]
    if status == 204 or (status == 200 and not response.content):
        return BatchOutcome(success=ids)
    if status == 201:
        created = _json_list(response)
        return BatchOutcome(success=ids, created=[str(c) for c in created])
    if status == 207:
        body = orjson.loads(response.content) if response.content else {}
        outcome = BatchOutcome(success=[str(s) for s in body.get("success", [])])
        for item in body.get("errors", []):
            problem = item.get("error") or {}
            if not isinstance(problem, dict) or "type" not in problem:
                problem = {"type": "InternalError", "detail": str(problem)}
            outcome.errors.append((str(item.get("entityId", "")), problem_error(problem, 0)))
        return outcome
    raise error_from_response(response)


def _json_list(response: httpx.Response) -> list[Any]:
    if not response.content:
        return []
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    return body if isinstance(body, list) else []
