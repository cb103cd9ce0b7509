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
request raises instead. `write_json` takes entities already serialised (the
outbox keeps them so): the request body is their bytes joined, not parsed
and serialised again.

The HTTP client may be injected (`httpx.AsyncClient`, so tests can pass one
with a mock transport). Without one, the client speaks HTTP/1.1 itself over
kept-alive asyncio connections (`_Http11`): httpx 0.23 (pinned by a test
dependency) spends about 0.85 ms of CPU per request in its layers (anyio
cancel scopes, h11, URL objects), a fifth of the agents' CPU at full load
where a wave carries 100 entities; `_Http11` spends about 0.05 ms. httpx
stays in use when a proxy is configured for the broker's URL. The @context
travels in the `Link` header when there is a single non-core context, or
inline (`application/ld+json`) when there are several, since a request
carries at most one JSON-LD Link header (6.3.5).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from models.context import is_core_context_url
from models.errors import InternalError, NgsiLdError, from_problem
from models.media import API, JSON, JSON_LD, LINK_REL

__all__ = [
    "BatchMode",
    "BatchOutcome",
    "BrokerUnavailable",
    "HttpReply",
    "NgsiLdClient",
    "Reply",
    "error_from_response",
    "error_from_transport",
    "is_retryable",
]

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


class HttpReply(Protocol):
    """What the client reads of an HTTP answer (an `httpx.Response` or a `Reply`)."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    @property
    def url(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer read by `_Http11`."""

    status_code: int
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


def error_from_transport(exc: Exception, url: str) -> BrokerUnavailable:
    """Map a transport failure (refused, reset, timeout) to BrokerUnavailable."""
    kind = type(exc).__name__
    return BrokerUnavailable(f"{kind} on {url}: {exc}", instance=url)


def error_from_response(response: HttpReply) -> NgsiLdError:
    """Map a non-2xx broker response to the most specific error (ProblemDetails when given)."""
    status = response.status_code
    body: Any = None
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and "type" in body:
        error = problem_error(body, status)
        if status >= 500 or status in _RETRYABLE_STATUS:  # noqa: SIM102 - the inner test is the exception
            if not is_retryable(error):  # e.g. a 503 whose body says BadRequestData: trust the status
                unavailable = BrokerUnavailable(error.detail, instance=str(response.url), status_code=status)
                return _answered(unavailable, status)
        return _answered(error, status)
    text = response.text[:300] if response.content else ""
    detail = f"HTTP {status} from {response.url}" + (f": {text}" if text else "")
    if status >= 500 or status in _RETRYABLE_STATUS:
        return _answered(BrokerUnavailable(detail, instance=str(response.url)), status)
    return from_problem({"type": _type_for_status(status), "detail": detail})


def _answered(error: NgsiLdError, status: int) -> NgsiLdError:
    """`error`, remembering the HTTP status the broker answered (`http_status`): the delivery tells a broker
    that answers 500 for one row (poison) from one that is unreachable or overloaded (502-504, 429)."""
    error.http_status = status
    return error


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
        self._http = http or (None if _Http11.serves(self.base_url) else httpx.AsyncClient(timeout=timeout))
        self._own = _Http11(self.base_url) if self._http is None else None
        self._timeout = timeout
        self._tenant_header = tenant_header
        self._extra = dict(extra_headers or {})

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own is not None:
            self._own.close()
        elif self._owns_http and self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
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
    ) -> HttpReply:
        url = f"{self.base_url}{API}{path}"
        headers, inline = self._headers(tenant, context, body=json_body is not None)
        content: bytes | None = None
        if json_body is not None:
            if inline:
                json_body = {**json_body, "@context": inline}
            content = orjson.dumps(json_body)
        return await self._request(method, url, headers, content, params)

    async def _request(self, method: str, url: str, headers: dict[str, str], content: bytes | None,
                       params: Mapping[str, str] | None) -> HttpReply:
        if self._own is not None:
            return await self._own.request(method, url, headers, content, params, self._timeout)
        assert self._http is not None
        try:
            return await self._http.request(method, url, headers=headers, content=content, params=params,
                                            timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, url) from exc

    async def _batch(self, op: str, entities: Sequence[bytes], ids: Sequence[str], tenant: str,
                     context: Sequence[str] | str | None, params: Mapping[str, str] | None = None) -> BatchOutcome:
        """POST serialised entities as one batch: the body is their JSON joined, never parsed again."""
        url = f"{self.base_url}{API}/entityOperations/{op}"
        headers, inline = self._headers(tenant, context, body=True)
        if inline:
            entities = [_with_context(e, orjson.dumps(inline)) for e in entities]
        response = await self._request("POST", url, headers, b"[" + b",".join(entities) + b"]", params)
        return _batch_outcome(response, ids)

    async def upsert(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                     context: Sequence[str] | str | None = None, replace: bool = False) -> BatchOutcome:
        """Batch Upsert (5.6.8): options=update (default) or replace."""
        return await self.write_json(*_encoded(entities), mode="replace" if replace else "update", tenant=tenant,
                                     context=context)

    async def update(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                     context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Batch Update (5.6.9): only existing entities; missing ones fail with ResourceNotFound."""
        return await self._batch("update", *_encoded(entities), tenant, context)

    async def merge(self, entities: Sequence[Mapping[str, Any]], *, tenant: str = "",
                    context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Batch Merge (5.6.20): only existing entities; missing ones fail with ResourceNotFound."""
        return await self._batch("merge", *_encoded(entities), tenant, context)

    async def write(self, entities: Sequence[Mapping[str, Any]], *, mode: BatchMode = "update", tenant: str = "",
                    context: Sequence[str] | str | None = None) -> BatchOutcome:
        """Write measures as `mode` says; `merge` creates the entities the broker does not have yet."""
        return await self.write_json(*_encoded(entities), mode=mode, tenant=tenant, context=context)

    async def write_json(self, entities: Sequence[bytes], ids: Sequence[str], *, mode: BatchMode = "update",
                         tenant: str = "", context: Sequence[str] | str | None = None) -> BatchOutcome:
        """`write` of entities already serialised (JSON objects, `ids[i]` the id of `entities[i]`)."""
        if mode != "merge":
            return await self._batch("upsert", entities, ids, tenant, context,
                                     {"options": "replace" if mode == "replace" else "update"})
        outcome = await self._batch("merge", entities, ids, tenant, context)
        missing = {i for i, e in outcome.errors if e.problem_type in {"ResourceNotFound", "NonexistentTenant"}}
        if not missing:
            return outcome
        retry = [(e, i) for e, i in zip(entities, ids) if i in missing]
        created = await self._batch("upsert", [e for e, _ in retry], [i for _, i in retry], tenant, context,
                                    {"options": "update"})
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


def _encoded(entities: Sequence[Mapping[str, Any]]) -> tuple[list[bytes], list[str]]:
    """(JSON of each entity, id of each entity)."""
    return [orjson.dumps(e) for e in entities], [str(e.get("id", "")) for e in entities]


def _with_context(entity: bytes, context: bytes) -> bytes:
    """A serialised JSON object with an "@context" member added (inline @context)."""
    body = entity.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("an entity must be a JSON object")
    head = body[:-1].rstrip()
    return head + (b'"@context":' if head.endswith(b"{") else b',"@context":') + context + b"}"


def _batch_outcome(response: HttpReply, ids: Sequence[str]) -> BatchOutcome:
    """Read 201/204/207 (clause 6.14-6.31); anything else raises the whole request's error."""
    status = response.status_code
    ids = list(ids)
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


def _json_list(response: HttpReply) -> list[Any]:
    if not response.content:
        return []
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    return body if isinstance(body, list) else []


# -- a small HTTP/1.1 client ----------------------------------------------------------------------

_NO_BODY = frozenset({204, 304})


class _Http11:
    """HTTP/1.1 requests to one origin over kept-alive connections (one per request in flight).

    What an NGSI-LD broker answers is read whole: a Content-Length body, a
    chunked one, or one that ends with the connection. A request that fails on
    a kept-alive connection before any answer came (the server had closed it
    while idle) is sent once more on a new connection. Every failure to get an
    answer (refused, reset, timeout) raises `BrokerUnavailable`.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._https else None
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    @staticmethod
    def serves(base_url: str) -> bool:
        """Whether `_Http11` can reach `base_url`: http(s) without credentials, and no proxy configured for it."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            return False
        proxies = urllib.request.getproxies_environment()
        # proxy_bypass_environment: in the standard library (urllib/request.py), not in typeshed's stubs
        bypass = urllib.request.proxy_bypass_environment(parts.hostname)  # type: ignore[attr-defined]
        return parts.scheme not in proxies or bool(bypass)

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()

    async def request(self, method: str, url: str, headers: Mapping[str, str], content: bytes | None,
                      params: Mapping[str, str] | None, timeout: float) -> Reply:
        target = url.removeprefix(self._origin)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        head = [f"{method} {target or '/'} HTTP/1.1", f"Host: {self._host_header}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if content is not None:
            head.append(f"Content-Length: {len(content)}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (content or b"")
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(method, url, message)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                TimeoutError) as exc:
            raise error_from_transport(exc, url) from exc

    async def _exchange(self, method: str, url: str, message: bytes) -> Reply:
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                writer.write(message)
                status_line = await reader.readline()
            except (OSError, asyncio.IncompleteReadError):
                status_line = b""
            if status_line:
                return await self._answer(method, url, reader, writer, status_line)
            writer.close()  # closed by the server while idle: not an answer, try another connection
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        try:
            writer.write(message)
            status_line = await reader.readline()
        except BaseException:
            writer.close()
            raise
        if not status_line:
            writer.close()
            raise ConnectionResetError("the server closed the connection without answering")
        return await self._answer(method, url, reader, writer, status_line)

    async def _answer(self, method: str, url: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      status_line: bytes) -> Reply:
        """Read the rest of an answer; keep the connection for the next request when the server allows."""
        try:
            version, status, fields = status_line.split(b" ", 1)[0], _status(status_line), {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
            if method == "HEAD" or status in _NO_BODY or 100 <= status < 200:
                body = b""
            elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
                body = await _chunked(reader)
            elif b"content-length" in fields:
                body = await reader.readexactly(int(fields[b"content-length"]))
            else:
                body, keep = await reader.read(), False
        except BaseException:  # cut short (error, timeout): the connection is in no state to be reused
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return Reply(status, body, url)


def _status(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {line[:80]!r}")
    return int(parts[1])


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (trailers skipped)."""
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
