"""`ContextResolver`: turns an @context value into a `Context`, fetching and caching remote documents.

Where a context document comes from, first match wins:

1. the core context URLs (any version) and the Smart Data Models URLs: the
   documents shipped with the platform, never fetched;
2. contexts hosted by clients (clause 5.13.2) or created by the broker;
3. the cache of fetched documents (memory, then the optional directory);
4. the network: HTTP(S) GET with a timeout, a size limit and a redirect
   limit; any failure is `LdContextNotAvailable` naming the URL and reason.

The store is also the inventory of the `/jsonldContexts` API (clause 5.13):
`entries`, `entry`, `host`, `get`, `delete`, `reload`.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import ipaddress
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import orjson

from models.context.core import core_definitions, core_document, is_core_context_url
from models.context.document import Context, TermDefinition, apply_local_context, is_absolute_iri
from models.context.smart_data_models import smart_data_models_document
from models.errors import BadRequestData, LdContextNotAvailable, OperationNotSupported, ResourceNotFound
from models.times import utc_iso

Kind = Literal["Hosted", "Cached", "ImplicitlyCreated"]
Fetch = Callable[[str], bytes]
"""Returns the body of a context URL or raises `LdContextNotAvailable`."""

ACCEPTED_CONTENT_TYPES: Final = frozenset({"application/ld+json", "application/json"})
_RESOLVED_LIMIT = 1024


class HttpFetch:
    """The default `Fetch`: a GET with a total deadline, a size limit, a redirect limit and a host policy.

    `timeout` bounds the whole fetch, connection, headers and body together: a server that sends one
    byte a second is cut at the deadline, whatever each read's own timeout (issue 17: such a server held
    a request 74 s). The fetch runs in an event loop of its own, so the deadline cancels it wherever it
    waits. `allowed_hosts` (when given) lists the only hosts fetched; `refuse_private` refuses hosts whose
    addresses are loopback, private, link-local or otherwise not public. Both are checked for every
    redirect too, before any connection, and every refusal or connection failure reads the same whatever
    the port's state (closed, another protocol, filtered), so the broker cannot be used to scan a host.
    """

    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 5.0,
                 max_bytes: int = 1 << 20, max_redirects: int = 5, allowed_hosts: frozenset[str] | None = None,
                 refuse_private: bool = False) -> None:
        del client  # kept for callers of the former signature: each fetch now opens its own async client
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None
        self.refuse_private = refuse_private

    def __call__(self, url: str) -> bytes:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: a worker thread of the resolver's pool
            runner = functools.partial(asyncio.run, self._fetch_within_deadline(url))
        else:  # called from a thread that runs an event loop: the fetch gets a thread (and a loop) of its own
            coroutine = self._fetch_within_deadline(url)
            runner = functools.partial(_in_thread, coroutine)
        try:
            return runner()
        except TimeoutError:
            raise _unavailable(url, f"timed out after {self.timeout} s") from None

    async def _fetch_within_deadline(self, url: str) -> bytes:
        async with asyncio.timeout(self.timeout):
            return await self._fetch(url)

    async def _check_host(self, original: str, url: str) -> None:
        host = (httpx.URL(url).host or "").lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            raise _unavailable(original, "its host is not among the allowed context hosts")
        if self.refuse_private and not await _public(host):
            raise _unavailable(original, "its host is not among the allowed context hosts")

    async def _fetch(self, original: str) -> bytes:
        headers = {"Accept": "application/ld+json, application/json;q=0.9"}
        url = original
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                try:
                    await self._check_host(original, url)
                    async with client.stream("GET", url, headers=headers) as response:
                        if response.is_redirect and response.headers.get("location"):
                            url = str(response.url.join(response.headers["location"]))
                            continue
                        return await self._read(original, response)
                except httpx.TimeoutException:
                    raise _unavailable(original, f"timed out after {self.timeout} s") from None
                except httpx.InvalidURL as exc:
                    raise _unavailable(original, f"invalid URL: {exc}") from None
                except httpx.HTTPError:
                    # one reason for every transport failure (refused, reset, not HTTP): no port scanning
                    raise _unavailable(original, "no HTTP answer from its server") from None
        raise _unavailable(original, "too many redirects")

    async def _read(self, url: str, response: httpx.Response) -> bytes:
        if response.status_code != 200:
            raise _unavailable(url, f"HTTP status {response.status_code}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not _json_media(content_type):
            raise _unavailable(url, f"content type {content_type!r} is not JSON-LD or JSON")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise _unavailable(url, f"body of {declared} bytes exceeds the limit of {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:  # chunked or lying server: stop reading at the limit
                raise _unavailable(url, f"body exceeds the limit of {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _in_thread(coroutine: Any) -> bytes:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(asyncio.run(coroutine))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box.append(exc)

    thread = threading.Thread(target=run, name="context-fetch-inline", daemon=True)
    thread.start()
    thread.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return bytes(box[0])


async def _public(host: str) -> bool:
    """Whether every address `host` resolves to is a public one (not loopback, private, link-local...)."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return bool(addresses) and all(a.is_global and not a.is_multicast for a in addresses)


def _json_media(content_type: str) -> bool:
    """Whether a context document's Content-Type is JSON: application/json, application/ld+json, any
    +json type (JSON-LD 1.1 API, LoadDocumentCallback), or none at all, when the body is read as JSON
    and refused only if it is not (RFC 7231 3.1.1.5 leaves the type to the recipient then)."""
    return not content_type or content_type in ACCEPTED_CONTENT_TYPES or content_type.endswith("+json")


def _unavailable(url: str, reason: str) -> LdContextNotAvailable:
    return LdContextNotAvailable(f"@context {url} is not available: {reason}", url=url, reason=reason)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return utc_iso(timestamp)


@dataclass
class _Entry:
    """One stored @context document (clause 5.13.1)."""

    url: str
    local_id: str
    kind: Kind
    document: dict[str, Any]
    created_at: float
    expires_at: float | None
    origin: str  # "shipped" | "network" | "disk" | "client" | "broker"
    last_usage: float | None = None
    hits: int = 0

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {"URL": self.url, "localId": self.local_id, "kind": self.kind,
                                "createdAt": _iso(self.created_at)}
        if self.expires_at is not None:
            info["expiresAt"] = _iso(self.expires_at)
        if self.last_usage is not None:
            info["lastUsage"] = _iso(self.last_usage)
        info["numberOfHits"] = self.hits
        # clause 5.13.3.5: extraInfo is "any kind of custom information"; a string, where the origin reads the
        # same to every client (the ETSI suite's check of this optional member breaks on an object: ledger)
        info["extraInfo"] = f"origin: {self.origin}"
        return info


class ContextResolver:
    """Resolves @context values to `Context` objects; caches documents and results; thread-safe."""

    def __init__(
        self,
        *,
        fetch: Fetch | None = None,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        max_bytes: int = 1 << 20,
        max_redirects: int = 5,
        ttl: float = 86_400.0,
        cache_dir: str | os.PathLike[str] | None = None,
        max_depth: int = 8,
        hosted_base_url: str | None = None,
        clock: Callable[[], float] = time.time,
        failure_ttl: float = 30.0,
        workers: int = 4,
        allowed_hosts: frozenset[str] | None = None,
        refuse_private: bool = False,
    ) -> None:
        self._fetch = fetch or HttpFetch(client, timeout=timeout, max_bytes=max_bytes, max_redirects=max_redirects,
                                         allowed_hosts=allowed_hosts, refuse_private=refuse_private)
        self.timeout = timeout
        # failures are remembered for `failure_ttl` s: a dead or slow context server costs one fetch, not one
        # per request (issue 17); fetches run on a pool of their own, so they never take the threads of
        # anything else in the process (MQTT and HTTP measures, provisioning, the stores)
        self.failure_ttl = failure_ttl
        self._failures: dict[str, tuple[LdContextNotAvailable, float]] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="context-fetch")
        self.ttl = ttl
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_depth = max_depth
        self.hosted_base_url = hosted_base_url.rstrip("/") if hosted_base_url else None
        self._clock = clock
        self._lock = threading.RLock()
        self._by_url: dict[str, _Entry] = {}
        self._by_id: dict[str, _Entry] = {}
        self._resolved: dict[Any, tuple[Context, float, tuple[_Entry, ...]]] = {}
        terms, vocab = core_definitions()
        self._core = Context(terms, vocab, source=None)

    # -- resolving ---------------------------------------------------------------------------

    @staticmethod
    def _key(value: Any) -> Any:
        # str for URLs, bytes for inline values: the two can never collide.
        return value if isinstance(value, str) else orjson.dumps(value)

    def _cached(self, key: Any, hit: bool = True) -> Context | None:
        found = self._resolved.get(key)
        if found is None:
            return None
        context, expires_at, entries = found
        now = self._clock()
        if now >= expires_at:
            return None
        if hit:
            for entry in entries:  # statistics only: a lost increment under contention is harmless
                entry.hits += 1
                entry.last_usage = now
        return context

    def resolve(self, value: Any = None, *, hit: bool = True) -> Context:
        """The active context for an @context value: None, a URL, an object, or a list of them.

        A dict holding an "@context" member is unwrapped (a whole JSON-LD
        document was given). The core context is always applied, protected.
        `hit`: whether this is a use of the stored @contexts that their
        numberOfHits counts (a request naming them, clause 5.13.3.5), not the
        broker's own bookkeeping.
        """
        if value is None:
            return self._core
        if isinstance(value, dict) and "@context" in value:
            value = value["@context"]
        try:
            key = self._key(value)
        except TypeError as exc:
            raise BadRequestData(f"invalid @context value: {exc}") from None
        context = self._cached(key, hit)
        if context is not None:
            return context
        locals_: list[dict[str, Any]] = []
        used: list[_Entry] = []
        self._collect(value, locals_, used, depth=0, chain=(), hit=hit)
        context = self._build(value, locals_)
        expiries = [e.expires_at for e in used if e.expires_at is not None]
        with self._lock:
            if len(self._resolved) >= _RESOLVED_LIMIT:
                self._resolved.pop(next(iter(self._resolved)))
            self._resolved[key] = (context, min(expiries, default=float("inf")), tuple(used))
        return context

    async def aresolve(self, value: Any = None, *, hit: bool = True) -> Context:
        """`resolve` for the event loop: immediate when cached, else fetched in a worker thread."""
        if value is None:
            return self._core
        unwrapped = value["@context"] if isinstance(value, dict) and "@context" in value else value
        try:
            context = self._cached(self._key(unwrapped), hit)
        except TypeError:
            context = None
        if context is not None:
            return context
        future = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(self.resolve, value, hit=hit))
        try:
            # a request waits for the pool at most about two fetches' deadlines, then is told so
            return await asyncio.wait_for(asyncio.shield(future), timeout=2 * self.timeout + 1)
        except TimeoutError:
            raise LdContextNotAvailable(f"@context {str(unwrapped)[:200]} is not available: every context fetch "
                                        "is busy; try again later", reason="busy") from None

    def close(self) -> None:
        """Stop the fetch pool (fetches under way end at their deadline)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def ahost(self, document: Any, *, implicit: bool = False) -> str:
        """`host` for the event loop, on the fetch pool (hosting resolves the document, which may fetch)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(self.host, document, implicit=implicit))

    async def areload(self, id_or_url: str) -> dict[str, Any]:
        """`reload` for the event loop, on the fetch pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.reload, id_or_url)

    def _collect(self, value: Any, out: list[dict[str, Any]], used: list[_Entry], *, depth: int,
                 chain: tuple[str, ...], hit: bool = True) -> None:
        if value is None:
            out.clear()  # JSON-LD: null resets the active context (the core one stays)
        elif isinstance(value, str):
            if is_core_context_url(value):
                return  # applied last and protected anyway (clause 4.4)
            if value in chain:
                raise _unavailable(value, "recursive inclusion: " + " -> ".join((*chain, value)))
            if depth >= self.max_depth:
                raise _unavailable(value, f"@context nested more than {self.max_depth} levels deep: "
                                   + " -> ".join((*chain, value)))
            entry = self._entry_for(value, hit)
            used.append(entry)
            self._collect(entry.document["@context"], out, used, depth=depth + 1, chain=(*chain, value), hit=hit)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, list):
                    raise BadRequestData("invalid @context: a list inside a list")
                self._collect(item, out, used, depth=depth, chain=chain, hit=hit)
        elif isinstance(value, dict):
            out.append(value)
        else:
            raise BadRequestData(f"invalid @context: {type(value).__name__} is not a URL, an object or a list")

    def _build(self, source: Any, locals_: list[dict[str, Any]]) -> Context:
        core_terms, vocab = core_definitions()
        active: dict[str, TermDefinition] = dict(core_terms)
        ignored: set[str] = set()
        fixed = frozenset(core_terms)
        for local in locals_:
            vocab = apply_local_context(local, active, vocab, fixed=fixed, ignored=ignored)
        user_terms = [t for t, d in active.items() if core_terms.get(t) is not d]
        if isinstance(source, str):
            urls = [source]
        else:
            urls = [u for u in source if isinstance(u, str)] if isinstance(source, list) else []
        return Context(active, vocab, source=source, urls=urls, user_terms=user_terms, ignored_terms=ignored)

    # -- documents ---------------------------------------------------------------------------

    def load_document(self, url: str) -> dict[str, Any]:
        """The context document a URL names (shipped, hosted, cached or fetched): a copy."""
        if is_core_context_url(url):
            return core_document()
        return copy.deepcopy(self._entry_for(url).document)

    def _entry_for(self, url: str, hit: bool = True) -> _Entry:
        now = self._clock()
        with self._lock:
            entry = self._by_url.get(url) or self._by_id.get(url)
            if entry is not None and (entry.expires_at is None or now < entry.expires_at):
                if hit:
                    entry.hits += 1
                    entry.last_usage = now
                return entry
        shipped = smart_data_models_document(url)
        if shipped is not None:
            entry = self._new_entry(url, "Cached", shipped, now, None, "shipped")
        else:
            entry = self._from_disk(url, now) or self._download_once(url, now)
        entry.last_usage = now
        with self._lock:
            self._store(entry)
            if hit:  # the use that fetched it is its first hit
                entry.hits += 1
        return entry

    def _new_entry(self, url: str, kind: Kind, document: dict[str, Any], now: float,
                   expires_at: float | None, origin: str) -> _Entry:
        return _Entry(url, f"urn:ngsi-ld:jsonldContext:{uuid.uuid4().hex}", kind, document, now, expires_at, origin)

    def _store(self, entry: _Entry) -> None:
        old = self._by_url.pop(entry.url, None)
        if old is not None:
            self._by_id.pop(old.local_id, None)
            entry.local_id, entry.hits = old.local_id, old.hits  # a refresh keeps the identity
        self._by_url[entry.url] = entry
        self._by_id[entry.local_id] = entry

    def _download_once(self, url: str, now: float) -> _Entry:
        """`_download`, once at a time per URL (others wait and share its result), failures remembered."""
        with self._lock:
            lock = self._fetching.setdefault(url, threading.Lock())
        with lock:
            with self._lock:
                failed = self._failures.get(url)
                entry = self._by_url.get(url)
            if failed is not None and self._clock() < failed[1]:
                raise LdContextNotAvailable(failed[0].detail, **failed[0].extra)
            if entry is not None and (entry.expires_at is None or self._clock() < entry.expires_at):
                return entry  # fetched by the request this one waited for
            try:
                entry = self._download(url, now)
                with self._lock:
                    self._failures.pop(url, None)
                return entry
            except LdContextNotAvailable as error:
                if self.failure_ttl > 0:
                    with self._lock:
                        if len(self._failures) >= _RESOLVED_LIMIT:
                            self._failures.pop(next(iter(self._failures)))
                        self._failures[url] = (error, self._clock() + self.failure_ttl)
                raise
            finally:
                with self._lock:
                    self._fetching.pop(url, None)

    def _download(self, url: str, now: float) -> _Entry:
        if not is_absolute_iri(url):
            raise BadRequestData(f"@context {url!r} is not an absolute URL")
        if not url.startswith(("http://", "https://")):
            raise _unavailable(url, "only http and https URLs are fetched")
        document = self._parse(url, self._fetch(url))
        self._to_disk(url, document, now)
        return self._new_entry(url, "Cached", document, now, now + self.ttl, "network")

    @staticmethod
    def _parse(url: str, body: bytes) -> dict[str, Any]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _unavailable(url, f"body is not JSON ({exc})") from None
        if not isinstance(document, dict) or "@context" not in document:
            raise _unavailable(url, "the document has no top-level @context member")
        return {"@context": document["@context"]}  # all else is discarded, as JSON-LD does

    def _disk_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest() + ".json")

    def _from_disk(self, url: str, now: float) -> _Entry | None:
        path = self._disk_path(url)
        if path is None or not path.is_file():
            return None
        try:
            saved = orjson.loads(path.read_bytes())
            fetched_at = float(saved["fetchedAt"])
            document = saved["document"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # a damaged cache file is refetched, not fatal
        if saved.get("url") != url or now >= fetched_at + self.ttl:
            return None
        return self._new_entry(url, "Cached", document, fetched_at, fetched_at + self.ttl, "disk")

    def _to_disk(self, url: str, document: dict[str, Any], now: float) -> None:
        path = self._disk_path(url)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(orjson.dumps({"url": url, "fetchedAt": now, "document": document}))
        os.replace(temporary, path)  # atomic: a reader never sees half a file

    # -- the /jsonldContexts inventory (clause 5.13) ---------------------------------------------

    def entries(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        """Metadata of every stored @context, optionally of one kind (clause 5.13.3)."""
        with self._lock:
            return [e.details() for e in self._by_id.values() if kind is None or e.kind == kind]

    def _find(self, id_or_url: str) -> _Entry:
        if not id_or_url:
            raise BadRequestData("no @context identifier given")
        entry = self._by_id.get(id_or_url) or self._by_url.get(id_or_url)
        if entry is None and is_core_context_url(id_or_url):
            # The core context is always in use (clause 4.4): every versioned URL is in the inventory,
            # a Cached copy of the document the platform ships.
            entry = self._new_entry(id_or_url, "Cached", core_document(), self._clock(), None, "shipped")
            self._store(entry)
        if entry is None:
            raise ResourceNotFound(f"no stored @context {id_or_url}")
        return entry

    def entry(self, id_or_url: str) -> dict[str, Any]:
        """Metadata of one stored @context (clause 5.13.4, details=true)."""
        with self._lock:
            return self._find(id_or_url).details()

    def host(self, document: Any, *, implicit: bool = False) -> str:
        """Store a client's @context (kind Hosted, or ImplicitlyCreated) and return its local id.

        `document` must be an object with an @context member (clause 5.13.2.3);
        its other members are discarded. The context is checked by building
        it, so an invalid one is refused now rather than at first use.
        """
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData("a hosted @context must be a JSON object with an @context member")
        self.resolve(document["@context"])
        now = self._clock()
        kind: Kind = "ImplicitlyCreated" if implicit else "Hosted"
        entry = self._new_entry("", kind, {"@context": copy.deepcopy(document["@context"])}, now, None,
                                "broker" if implicit else "client")
        entry.url = f"{self.hosted_base_url}/{entry.local_id}" if self.hosted_base_url else entry.local_id
        with self._lock:
            self._store(entry)
        return entry.local_id

    def url_of(self, local_id: str) -> str:
        """The URL a stored @context is known by."""
        with self._lock:
            return self._find(local_id).url

    def get(self, local_id: str) -> dict[str, Any]:
        """The content of a Hosted or ImplicitlyCreated @context (clause 5.13.4, details=false)."""
        with self._lock:
            entry = self._find(local_id)
            if entry.kind == "Cached":
                raise OperationNotSupported(f"@context {local_id} is a cached copy and is not served")
            entry.hits += 1
            entry.last_usage = self._clock()
            return copy.deepcopy(entry.document)

    def delete(self, id_or_url: str) -> None:
        """Remove a stored @context (clause 5.13.5, reload=false); resolved contexts are recomputed.

        The core context cannot be removed (BadRequestData): every request uses it (clause 4.4).
        """
        with self._lock:
            entry = self._find(id_or_url)
            if is_core_context_url(entry.url):
                raise BadRequestData(f"the core @context {entry.url} cannot be deleted; reload=true refreshes it")
            self._by_id.pop(entry.local_id, None)
            self._by_url.pop(entry.url, None)
            self._resolved.clear()
        path = self._disk_path(entry.url)
        if path is not None:
            path.unlink(missing_ok=True)

    def reload(self, id_or_url: str) -> dict[str, Any]:
        """Download a Cached @context again and replace it; on failure keep it and raise (clause 5.13.5)."""
        with self._lock:
            entry = self._find(id_or_url)
        if entry.kind != "Cached":
            raise BadRequestData(f"only Cached @contexts can be reloaded; {id_or_url} is {entry.kind}")
        now = self._clock()
        shipped = core_document() if is_core_context_url(entry.url) else smart_data_models_document(entry.url)
        fresh = (self._new_entry(entry.url, "Cached", shipped, now, None, "shipped") if shipped is not None
                 else self._download(entry.url, now))
        with self._lock:
            self._store(fresh)
            self._resolved.clear()
        return fresh.details()
