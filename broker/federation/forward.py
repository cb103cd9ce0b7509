"""Distributed operations (clauses 4.3.6, 6.3.17, 6.3.18, Annex D): which registrations a request goes to,
the forwarded HTTP request, and the merge of what comes back.

    plan(...)        the matching registrations of one operation, by mode, loop-free (Via)
    send(...)        one forwarded request with the per-source timeout; a Reply (ok, status, body, error)
    merge_entity()   datasetId-aware merge of ENF documents, the most recent observedAt winning

Forwarded requests carry the client's own @context (Link), so that the
terms of type, attrs, q and bodies mean what the client meant; the
registration's restrictions are applied to them (types and attribute
names the registration does not offer are not asked for, clause 4.3.6.1).
Each hop appends `1.1 <host:port>` of this broker to `Via`; a registration
whose endpoint is already in `Via` is left out, and a request that reaches
this broker again is not forwarded (GET: NGSILD-Warning 199; unsafe
methods: 508 Loop Detected).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import orjson

from broker.federation import matching
from broker.federation.recontext import Recontext
from broker.federation.registration import operations_of
from broker.federation.service import RegistrationService
from broker.store.base import RegistryDoc
from models.errors import NgsiLdError

log = logging.getLogger("broker.federation")
API = "/ngsi-ld/v1"
REQUEST_VALUE = "urn:ngsi-ld:request"
_NOT_FORWARDED = frozenset({"content-length", "host", "connection", "transfer-encoding"})


@dataclass(slots=True)
class Target:
    """One registration a request goes to, with what it may be asked for."""

    item: RegistryDoc
    reg: dict[str, Any]
    mode: str
    types: list[str]
    """entity type IRIs the registration offers for this request (empty: any)"""
    attrs: list[str]
    """attribute IRIs it offers (empty: any)"""

    @property
    def endpoint(self) -> str:
        return str(self.reg["endpoint"]).rstrip("/")


@dataclass(slots=True)
class Reply:
    """What one context source answered."""

    target: Target
    status: int = 0
    body: Any = None
    error: str | None = None
    entity_map: str | None = None
    """the source's NGSILD-EntityMap answer header, absolute (broker.federation.entitymaps: linkedMaps)"""

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    def warning(self) -> str:
        """The NGSILD-Warning value for an abnormal reply (Table 6.3.17-1)."""
        code = 199 if self.status == 0 else 299
        text = (self.error or f"HTTP {self.status}").replace('"', "'")
        return f'{code} {self.target.endpoint} "{self.target.item.id}: {text}"'


@dataclass(slots=True)
class Plan:
    """The targets of one operation and whether this broker is inside a loop."""

    targets: list[Target] = field(default_factory=list)
    loop: bool = False
    skipped: list[Target] = field(default_factory=list)
    """registrations left out because their endpoint is already in Via"""


def netloc(url: str) -> str:
    """host:port of a URL (port made explicit)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def via_hops(value: str | None) -> set[str]:
    """The received-by pseudonyms of a Via header (RFC 7230 5.7.1): host:port or an alias."""
    hops = set()
    for part in (value or "").split(","):
        words = part.strip().split()
        if len(words) >= 2:
            hops.add(words[1].lower())
    return hops


class Forwarder:
    """Plans and sends distributed operations for one broker."""

    def __init__(self, registrations: RegistrationService, *, me: str, timeout: float, public_url: str = "") -> None:
        self.registrations = registrations
        self.me = me.lower()
        """this broker's host:port in Via"""
        self.public_url = public_url.rstrip("/") or f"http://{self.me}"
        """the base URL sources reach this broker at (relay endpoint of subscription copies)"""
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(max_connections=100))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # ---------------------------------------------------------------- planning

    async def plan(self, tenant: str, operation: str, wanted: matching.Wanted, via: str | None,
                   *, modes: tuple[str, ...] = ("inclusive", "exclusive", "redirect", "auxiliary")) -> Plan:
        """The registrations that take `operation` for this request (clause 4.3.6, 4.20)."""
        out = Plan()
        hops = via_hops(via)
        registrations = await self.registrations.active(tenant)
        if not registrations:
            return out
        out.loop = self.me in hops
        for item, reg in registrations:
            mode = reg.get("mode", "inclusive")
            if mode not in modes or operation not in operations_of(reg):
                continue
            infos = matching.matching_infos(reg, wanted)
            if not infos or not matching.registration_matches(reg, wanted):
                continue
            types: set[str] = set()
            attrs: set[str] = set()
            any_type = any_attr = False
            for info in infos:
                ents = info.get("entities") or []
                if not ents:
                    any_type = True
                for e in ents:
                    types.update(e["type"] if isinstance(e["type"], list) else [e["type"]])
                names = list(info.get("propertyNames", ())) + list(info.get("relationshipNames", ()))
                if not names:
                    any_attr = True
                attrs.update(names)
            target = Target(item, reg, mode, [] if any_type else sorted(types), [] if any_attr else sorted(attrs))
            alias = str(reg.get("contextSourceAlias", "")).lower()
            if netloc(target.endpoint) in hops or (alias and alias in hops) or out.loop:
                out.skipped.append(target)
                continue
            out.targets.append(target)
        return out

    # ---------------------------------------------------------------- sending

    def headers(self, target: Target, request_headers: Any, context_value: Any, *, body: bool) -> dict[str, str]:
        """The headers of a forwarded request: Link, Accept, tenant, contextSourceInfo, Via (clause 4.3.6.5)."""
        out = {"Accept": "application/json"}
        if isinstance(context_value, list) and len(context_value) == 1:
            context_value = context_value[0]
        if isinstance(context_value, str):
            out["Link"] = f'<{context_value}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        if body:
            out["Content-Type"] = "application/json"
        if target.reg.get("tenant"):
            out["NGSILD-Tenant"] = str(target.reg["tenant"])
        for kv in target.reg.get("contextSourceInfo") or []:
            key, value = kv["key"], kv["value"]
            if key in ("accept", "contentType", "jsonldContext", "ngsildConformance") or key.lower() in _NOT_FORWARDED:
                continue
            if value == REQUEST_VALUE:
                value = request_headers.get(key)
                if value is None:
                    continue
            out[key] = value
        previous = request_headers.get("via")
        out["Via"] = f"{previous}, 1.1 {self.me}" if previous else f"1.1 {self.me}"
        return out

    async def send(self, target: Target, method: str, path: str, *, params: list[tuple[str, str]] | None = None,
                   body: Any = None, request_headers: Any, context_value: Any,
                   extra_headers: dict[str, str] | None = None) -> Reply:
        """One forwarded request; never raises (a failure is a Reply with its error). `extra_headers`: more
        headers for this source (the linked EntityMap of a query that uses a map, 5.7.4.4)."""
        assert self._http is not None, "forwarder not started"
        info = source_info(target)
        reply = Reply(target)
        rewrite: Recontext | None = None
        if "jsonldContext" in info:  # clause 4.3.6.6: the request in the registration's terms
            try:
                rewrite = Recontext(await self.registrations.resolver.aresolve(context_value),
                                    await self.registrations.resolver.aresolve(info["jsonldContext"]))
            except NgsiLdError as exc:
                reply.error = f"jsonldContext {info['jsonldContext']}: {exc.detail}"
                await self._record(target, False)
                return reply
            params, body = rewrite.params(params), rewrite.payload(body)
            context_value = info["jsonldContext"]
        elif body is not None:
            body = _as_content_type(body, info.get("contentType"), context_value)
        # ':' ',' '*' are allowed as they are in a query (RFC 3986 3.4): ids and lists go as the client wrote them
        url = target.endpoint + API + path + (f"?{urlencode(params, safe=':,*')}" if params else "")
        headers = self.headers(target, request_headers, context_value, body=body is not None)
        headers.update(extra_headers or {})
        if _carries_context(body):
            headers.pop("Link", None)
            headers["Content-Type"] = "application/ld+json"
        if info.get("accept"):
            headers["Accept"] = info["accept"]
        try:
            response = await self._http.request(method, url, headers=headers,
                                                content=orjson.dumps(body) if body is not None else None)
            reply.status = response.status_code
            if "ngsild-entitymap" in response.headers:
                reply.entity_map = urljoin(url, response.headers["ngsild-entitymap"])
            if response.content:
                try:
                    reply.body = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    reply.body = None
                    if reply.status < 300:
                        reply.error = "the answer is no JSON"
        except httpx.TimeoutException:
            reply.error = f"no answer within {self.timeout:g} s"
        except (httpx.HTTPError, OSError) as exc:
            reply.error = f"unreachable: {type(exc).__name__}"
        if rewrite is not None and reply.body is not None:
            reply.body = rewrite.back().payload(reply.body)
        await self._record(target, reply.ok or reply.status == 404)  # 404 is no abnormal behaviour (6.3.17)
        return reply

    async def _record(self, target: Target, ok: bool) -> None:
        try:
            await self.registrations.record(target.item, ok)
        except Exception:  # the status members are a courtesy; a failed write must not fail the request
            log.exception("could not record the status of registration %s", target.item.id)

    async def send_all(self, targets: list[Target], method: str, path_of: Any, **kw: Any) -> list[Reply]:
        """Send to every target at once (path_of(target) gives each its path and params)."""
        async def one(t: Target) -> Reply:
            path, params, body = path_of(t)
            return await self.send(t, method, path, params=params, body=body, **kw)

        return list(await asyncio.gather(*(one(t) for t in targets)))


def source_info(target: Target) -> dict[str, str]:
    """The registration's contextSourceInfo as a dict (clauses 4.3.6.5, 4.3.6.6)."""
    pairs = target.reg.get("contextSourceInfo") or []
    return {str(kv["key"]): str(kv["value"]) for kv in pairs if isinstance(kv, dict) and "key" in kv and "value" in kv}


def _as_content_type(body: Any, content_type: str | None, context_value: Any) -> Any:
    """The payload as contextSourceInfo `contentType` asks (clause 4.3.6.6): application/ld+json carries its
    @context in the payload, application/json in Link (so only a context given by URL can leave the payload)."""
    items = body if isinstance(body, list) else [body]
    if content_type == "application/ld+json" and context_value is not None and not _carries_context(body):
        with_context = [{**i, "@context": context_value} if isinstance(i, dict) else i for i in items]
        return with_context if isinstance(body, list) else with_context[0]
    if content_type == "application/json" and _carries_context(body) and isinstance(context_value, str):
        without = [{k: v for k, v in i.items() if k != "@context"} if isinstance(i, dict) else i for i in items]
        return without if isinstance(body, list) else without[0]
    return body


def _carries_context(body: Any) -> bool:
    if isinstance(body, dict):
        return "@context" in body
    return isinstance(body, list) and any(isinstance(i, dict) and "@context" in i for i in body)


# ---------------------------------------------------------------- merging


def _instances(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def _observed(inst: dict[str, Any]) -> str:
    return str(inst.get("observedAt", ""))


def merge_entity(base: dict[str, Any] | None, other: dict[str, Any], *, auxiliary: bool = False) -> dict[str, Any]:
    """Merge two ENF documents of one entity (clauses 4.3.6.2, 4.5.5).

    Attribute instances are told apart by datasetId; for the same datasetId
    the instance with the most recent observedAt wins (the one already held
    when neither has one). Types are united. An auxiliary source only adds
    what is missing (it never overrides, clause 4.3.6.2).
    """
    if base is None:
        return dict(other)
    out = dict(base)
    out["type"] = matching.united_types(base.get("type"), other.get("type"))
    for name, value in other.items():
        if name in ("id", "type", "@context"):
            continue
        if name not in out:
            out[name] = value
            continue
        if auxiliary or name == "scope":
            continue
        held = {i.get("datasetId"): i for i in _instances(out[name])}
        for inst in _instances(value):
            key = inst.get("datasetId")
            mine = held.get(key)
            if mine is None or (_observed(inst) and _observed(inst) > _observed(mine)):
                held[key] = inst
        out[name] = list(held.values())  # ENF: always a list, one item per datasetId
    return out
