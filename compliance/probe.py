"""`metropole check broker URL`: probe any NGSI-LD broker against ETSI GS CIM 009 V1.9.1.

Non-destructive: every request carries a test tenant of its own
(`NGSILD-Tenant: compliance-<random>`) and touches only entities whose ids
start with `urn:ngsi-ld:AirQualityObserved:compliance-<run>-`; everything
created is deleted at the end. A local HTTP receiver takes the
notifications of the subscription checks, and a local context source
(`ContextSource`, on the same host) answers the forwarded requests of the
distributed-operation checks: the broker must be able to reach this host.

One check per function (compliance/probe_checks.py), registered with its
clause and feature (compliance/probe_registry.py):

    @check("entities", "5.6.1", "Create entity answers 201 with a Location header")
    def create_entity(p: Probe) -> str: ...

A check returns a short observation on success, raises `Failed(expected,
observed)` otherwise; a 501, or a 404/405 that is not an NGSI-LD
ProblemDetails (the route does not exist), makes it "not supported". No
check is ever skipped: each one ends as pass, fail or not supported, with
the exchanges that decided it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from compliance.probe_checks import CHECKS
from compliance.probe_registry import API, ERRORS, CheckSpec, Failed, NotSupported
from models.smart_data_models import AirQualityObserved

__all__ = ["API", "CHECKS", "DEFAULT_CONTEXT", "ERRORS", "FAIL", "NOT_SUPPORTED", "PASS", "CheckResult", "CheckSpec",
           "ContextSource", "Exchange", "Failed", "NotSupported", "NotificationReceiver", "Probe", "ProbeReport"]

DEFAULT_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
PASS, FAIL, NOT_SUPPORTED = "pass", "fail", "not supported"
MAX_BODY = 4000


@dataclass
class Exchange:
    """One HTTP request and its response, as sent and received (bodies truncated)."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int | None
    response_headers: dict[str, str]
    response_body: Any


@dataclass
class CheckResult:
    """The outcome of one check."""

    id: str
    feature: str
    clause: str
    title: str
    status: str
    expected: str
    observed: str
    exchanges: list[Exchange] = field(default_factory=list)


# --- the notification receiver ------------------------------------------------------------


class NotificationReceiver:
    """A local HTTP server recording every notification POSTed to it."""

    def __init__(self, host: str = "127.0.0.1", advertised_host: str | None = None) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                except ValueError:
                    received.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{advertised_host or host}:{self.httpd.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="notifications", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first notification matching predicate within timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in list(self.received):
                if predicate(n):
                    return n
            time.sleep(0.05)
        return None


# --- the context source of the distributed-operation checks ----------------------------------


class ContextSource:
    """A tiny NGSI-LD context source on a local HTTP server: it answers GET /ngsi-ld/v1/entities/{id} and
    GET /ngsi-ld/v1/entities?type=... from the entities in `entities`, and records every request it gets.

    The broker under test must reach it at `url` (as it must reach the notification receiver).
    `answer` is what it sends back for an entity it holds (the entity itself; a test can make it lie).
    """

    def __init__(self, host: str = "127.0.0.1", advertised_host: str | None = None) -> None:
        self.entities: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                split = urlsplit(self.path)
                source.requests.append({"path": split.path, "query": parse_qs(split.query),
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                prefix = API + "/entities"
                body: Any = {"type": ERRORS + "ResourceNotFound", "title": "not held here"}
                status = 404
                if split.path == prefix:
                    wanted = {t for v in parse_qs(split.query).get("type", []) for t in v.split(",")}
                    status, body = 200, [source.answer(e) for e in source.entities.values()
                                         if not wanted or any(_same_term(e["type"], t) for t in wanted)]
                elif split.path.startswith(prefix + "/"):
                    held = source.entities.get(unquote(split.path[len(prefix) + 1:]))
                    if held is not None:
                        status, body = 200, source.answer(held)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status == 200 else "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{advertised_host or host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="context-source", daemon=True)

    def answer(self, entity: dict[str, Any]) -> dict[str, Any]:
        return entity

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _same_term(held: str, asked: str) -> bool:
    """Whether an asked type (a term, or an IRI expanded from it) names the held type term."""
    return asked == held or asked.endswith(("/" + held, "#" + held, ":" + held))


# --- the probe ----------------------------------------------------------------------------


class Probe:
    """Runs the checks against one broker in a tenant of its own."""

    def __init__(self, base_url: str, *, tenant: str | None = None, context: str = DEFAULT_CONTEXT,
                 client: httpx.Client | None = None, receiver: NotificationReceiver | None = None,
                 notification_timeout: float = 5.0, timeout: float = 15.0,
                 source: ContextSource | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.run_id = uuid.uuid4().hex[:8]
        self.tenant = tenant or f"compliance-{self.run_id}"
        self.context = context
        self.client = client or httpx.Client(timeout=timeout)
        self.receiver = receiver
        self.notification_timeout = notification_timeout
        self.exchanges: list[Exchange] = []
        self.created: set[str] = set()
        self.subscriptions: set[str] = set()
        self.registrations: set[str] = set()
        self._source = source
        self._source_started = False
        self._n = 0

    # helpers used by the checks

    def new_id(self) -> str:
        self._n += 1
        return f"urn:ngsi-ld:AirQualityObserved:compliance-{self.run_id}-{self._n}"

    def source(self) -> ContextSource:
        """The probe's context source, started on first use (where the notification receiver listens)."""
        if self._source is None:
            host = self.receiver.httpd.server_address[0] if self.receiver else "127.0.0.1"
            advertised = self.receiver.url.split("//", 1)[1].rsplit(":", 1)[0] if self.receiver else None
            self._source = ContextSource(str(host), advertised)
        if not self._source_started:
            self._source.__enter__()
            self._source_started = True
        return self._source

    def link(self) -> dict[str, str]:
        return {"Link": f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}

    def entity(self, eid: str | None = None, *, no2: float = 41, lon: float = 5.4474, lat: float = 43.5265,
               observed: str = "2026-11-26T07:00:00Z") -> dict[str, Any]:
        """A valid AirQualityObserved in normalized form, without @context."""
        model = AirQualityObserved.model_validate({
            "id": eid or self.new_id(), "type": "AirQualityObserved", "dateObserved": observed, "no2": no2,
            "location": {"type": "Point", "coordinates": [lon, lat]}})
        return model.to_ngsi_ld(with_context=False)

    def request(self, method: str, path: str, *, json_body: Any = None, content: str | None = None,
                headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                tenant: str | None = None, link: bool = True) -> httpx.Response:
        """One request to the broker, recorded for the report."""
        sent = {"NGSILD-Tenant": tenant or self.tenant}
        if link:
            sent.update(self.link())
        if json_body is not None or content is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        url = self.base_url + path
        body = content if content is not None else (json.dumps(json_body) if json_body is not None else None)
        try:
            response = self.client.request(method, url, content=body, headers=sent, params=params)
        except httpx.HTTPError as exc:
            self.exchanges.append(Exchange(method, url, sent, _truncate(json_body or content), None, {}, str(exc)))
            raise Failed("an HTTP response", f"no response ({type(exc).__name__}: {exc})") from exc
        try:
            parsed: Any = response.json() if response.content else None
        except ValueError:
            parsed = response.text
        self.exchanges.append(Exchange(method, str(response.request.url), sent, _truncate(json_body or content),
                                       response.status_code, _headers(response), _truncate(parsed)))
        return response

    def create(self, entity: dict[str, Any]) -> str:
        """Create an entity (a prerequisite of other checks): its id, or a failure."""
        r = self.request("POST", f"{API}/entities", json_body=entity)
        self.expect_status(r, 201)
        self.created.add(entity["id"])
        return str(entity["id"])

    def expect_status(self, r: httpx.Response, *expected: int) -> None:
        """Raise NotSupported or Failed unless the status is one of expected."""
        if r.status_code in expected:
            return
        if r.status_code == 501 or (r.status_code in (404, 405) and not _is_problem(r)):
            raise NotSupported(f"{r.request.method} {r.request.url.path} answered {r.status_code}")
        raise Failed(" or ".join(map(str, expected)), f"{r.status_code} {_short(r)}")

    def expect_problem(self, r: httpx.Response, status: int, error: str) -> str:
        """The response is a ProblemDetails of the given status and error type (clause 5.5.2/5.5.3)."""
        self.expect_status(r, status)
        body = _json(r)
        if not isinstance(body, dict) or body.get("type") != ERRORS + error:
            raise Failed(f"a ProblemDetails with type {ERRORS + error}", _short(r))
        if "application/problem+json" not in r.headers.get("content-type", "") and "json" not in r.headers.get(
            "content-type", ""
        ):
            raise Failed("Content-Type application/problem+json", r.headers.get("content-type", "none"))
        return f"{status} {error}"

    # running

    def run(self, features: set[str] | None = None) -> ProbeReport:
        """Run every check (or those of `features`), then clean up."""
        started = time.time()
        results = []
        try:
            for spec in CHECKS:
                if features and spec.feature not in features:
                    continue
                results.append(self.run_one(spec))
        finally:
            self.cleanup()
        return ProbeReport(self.base_url, self.tenant, results, started, time.time())

    def run_one(self, spec: CheckSpec) -> CheckResult:
        self.exchanges = []
        try:
            observed = spec.func(self)
            status, expected = PASS, spec.expected
        except NotSupported as exc:
            status, expected, observed = NOT_SUPPORTED, spec.expected, f"not supported: {exc}"
        except Failed as exc:
            status, expected, observed = FAIL, exc.expected, exc.observed
        except Exception as exc:  # noqa: BLE001 - an unexpected answer is a failure, reported as such
            status, expected, observed = FAIL, spec.expected, f"{type(exc).__name__}: {exc}"
        return CheckResult(spec.id, spec.feature, spec.clause, spec.title, status, expected, observed,
                           list(self.exchanges))

    def cleanup(self) -> None:
        """Delete what the probe created (best effort; failures here change no verdict)."""
        for rid in list(self.registrations):
            try:
                self.client.delete(f"{self.base_url}{API}/csourceRegistrations/{rid}",
                                   headers={"NGSILD-Tenant": self.tenant})
            except httpx.HTTPError:
                pass
        for sid in list(self.subscriptions):
            try:
                self.client.delete(f"{self.base_url}{API}/subscriptions/{sid}", headers={"NGSILD-Tenant": self.tenant})
            except httpx.HTTPError:
                pass
        for eid in sorted(self.created):
            try:
                self.client.delete(f"{self.base_url}{API}/entities/{eid}", headers={"NGSILD-Tenant": self.tenant})
            except httpx.HTTPError:
                pass
        if self._source is not None and self._source_started:
            self._source.__exit__(None, None, None)
            self._source_started = False


@dataclass
class ProbeReport:
    """Every check's outcome against one broker."""

    broker: str
    tenant: str
    results: list[CheckResult]
    started: float
    finished: float

    def summary(self) -> dict[str, int]:
        return {
            "checks": len(self.results),
            "passed": sum(r.status == PASS for r in self.results),
            "failed": sum(r.status == FAIL for r in self.results),
            "not_supported": sum(r.status == NOT_SUPPORTED for r in self.results),
        }

    @property
    def ok(self) -> bool:
        return all(r.status == PASS for r in self.results)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": "broker", "broker": self.broker, "tenant": self.tenant, "summary": self.summary(),
                "ok": self.ok, "duration_s": round(self.finished - self.started, 3),
                "checks": [asdict(r) for r in self.results]}


def _headers(r: httpx.Response) -> dict[str, str]:
    keep = ("content-type", "location", "link", "ngsild-results-count", "ngsild-tenant")
    return {k: v for k, v in r.headers.items() if k.lower() in keep}


def _truncate(body: Any) -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    if text is not None and len(text) > MAX_BODY:
        return text[:MAX_BODY] + " ...(truncated)"
    return body


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _is_problem(r: httpx.Response) -> bool:
    body = _json(r)
    return isinstance(body, dict) and str(body.get("type", "")).startswith(ERRORS)


def _short(r: httpx.Response) -> str:
    text = r.text
    return text if len(text) <= 300 else text[:300] + "..."
