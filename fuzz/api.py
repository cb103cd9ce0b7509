"""Fuzz targets over a socket: API bodies, and every operation of the NGSI-LD OpenAPI (v1.8.1, ETSI's file).

`Broker` serves the embedded broker (SQLite in a temporary folder) with uvicorn on a free port of
127.0.0.1. A response of status 500 or more (but 501 OperationNotSupported and 503
LdContextNotAvailable, which the spec gives to features not offered and to contexts not reachable), a
non-ProblemDetails error body, or a dropped connection is a Failure.

Schemathesis (the issue's tool) cannot be installed beside the pinned test dependencies: every
schemathesis 4.x needs rich>=13.9.4, and ngsildclient 0.5.2 (the issue 3 compatibility test) pins
rich 12.6.0. `openapi_operations` walks the same OpenAPI document instead: each path and method, its
path and query parameters drawn from their schema's type plus hostile strings, its body from a JSON
strategy shaped like NGSI-LD payloads.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
import yaml
from hypothesis import strategies as st

from broker.app import create_app
from broker.settings import BrokerSettings
from fuzz.targets import HOSTILE, Failure, q_text

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ngsi-ld" / "ngsi-ld-api-v1.8.1.yaml"
ALLOWED_5XX = {501, 503}


class Broker:
    """The embedded broker on a free port, in a thread (SQLite in a temporary folder)."""

    def __init__(self) -> None:
        import socket

        self.tmp = tempfile.TemporaryDirectory(prefix="metropole-fuzz-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data = Path(self.tmp.name)
        settings = BrokerSettings(host="127.0.0.1", port=port, data_dir=data, store_url=f"sqlite:///{data / 'b.db'}",
                                  context_timeout=1.0)
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                                    log_level="critical", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the broker did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=30, headers={"NGSILD-Tenant": "fuzz"})
        seed = {"id": "urn:ngsi-ld:Fuzz:1", "type": "Fuzz", "a": {"type": "Property", "value": 1},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.37, 43.29]}}}
        self.client.post("/ngsi-ld/v1/entities", json=seed)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.tmp.cleanup()


def check(response_of: Any, what: str) -> None:
    """Send; the answer must not be a 5xx (but 501/503) and an error must be a ProblemDetails."""
    try:
        r = response_of()
    except httpx.TransportError as exc:
        raise Failure(f"{what}: no answer ({type(exc).__name__}: {exc})"[:500]) from exc
    if r.status_code >= 500 and r.status_code not in ALLOWED_5XX:
        raise Failure(f"{what}: {r.status_code} {r.text[:300]}"[:600])
    if r.status_code >= 400 and r.status_code not in (405, 406, 415) and r.content:
        try:
            body = r.json()
        except ValueError:
            raise Failure(f"{what}: {r.status_code} with a body that is no JSON: {r.text[:200]}") from None
        if not (isinstance(body, dict) and ("type" in body or "error" in body)):
            raise Failure(f"{what}: {r.status_code} without a ProblemDetails body: {r.text[:200]}")


# ---------------------------------------------------------------- API bodies

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                  st.text(max_size=10), st.sampled_from(HOSTILE))
_json = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(
    st.one_of(st.sampled_from(["type", "value", "object", "id", "@context", "observedAt", "datasetId", "unitCode",
                               "languageMap", "vocab", "coordinates", "q", "entities", "attrs", "geoQ", "temporalQ"]),
              st.text(max_size=8)), c, max_size=5)), max_leaves=30)
_attribute = st.one_of(_json, st.fixed_dictionaries({"type": st.sampled_from(
    ["Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty", "ListProperty", "JsonProperty",
     "x"]), "value": _json}, optional={"object": _json, "observedAt": st.sampled_from(
    ["2020-01-01T00:00:00Z", "x", ""]), "datasetId": st.sampled_from(["urn:x:1", "x", ""]), "languageMap": _json}))
_id = st.one_of(st.just("urn:ngsi-ld:Fuzz:") .map(lambda p: p + "x"), st.text(max_size=20).map(lambda t: "urn:ngsi-ld:F:" + t),
                st.sampled_from(HOSTILE), _json)
entity = st.fixed_dictionaries({"id": _id, "type": st.one_of(st.just("Fuzz"), _json)},
                               optional={"a": _attribute, "location": _attribute, "b": _attribute, "scope": _json})
query_body = st.fixed_dictionaries({"type": st.one_of(st.just("Query"), _json)}, optional={
    "entities": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"type": st.one_of(st.just("Fuzz"), _json),
                                                                       "id": _json, "idPattern": _json}), max_size=2),
                          _json),
    "q": st.one_of(q_text, _json), "scopeQ": _json, "attrs": _json, "geoQ": _json, "temporalQ": _json,
    "lang": _json, "pick": _json, "local": _json})
subscription = st.fixed_dictionaries({"type": st.one_of(st.just("Subscription"), _json)}, optional={
    "entities": _json, "q": st.one_of(q_text, _json), "watchedAttributes": _json, "geoQ": _json,
    "notification": st.one_of(_json, st.just({"endpoint": {"uri": "http://127.0.0.1:9/n"}})),
    "throttling": _json, "expiresAt": _json, "timeInterval": _json})
ENDPOINTS: list[tuple[str, str, st.SearchStrategy[Any]]] = [
    ("POST", "/ngsi-ld/v1/entities", st.one_of(entity, _json)),
    ("POST", "/ngsi-ld/v1/entityOperations/upsert", st.lists(st.one_of(entity, _json), max_size=4)),
    ("POST", "/ngsi-ld/v1/entityOperations/update", st.lists(entity, max_size=3)),
    ("POST", "/ngsi-ld/v1/entityOperations/merge", st.lists(entity, max_size=3)),
    ("POST", "/ngsi-ld/v1/entityOperations/delete", st.lists(_json, max_size=3)),
    ("POST", "/ngsi-ld/v1/entityOperations/query", query_body),
    ("POST", "/ngsi-ld/v1/temporal/entityOperations/query", query_body),
    ("POST", "/ngsi-ld/v1/temporal/entities", st.one_of(entity, _json)),
    ("PATCH", "/ngsi-ld/v1/entities/urn:ngsi-ld:Fuzz:1/attrs", st.one_of(entity, _json)),
    ("PATCH", "/ngsi-ld/v1/entities/urn:ngsi-ld:Fuzz:1", st.one_of(entity, _json)),
    ("POST", "/ngsi-ld/v1/subscriptions", subscription),
    ("POST", "/ngsi-ld/v1/jsonldContexts", _json),
    ("POST", "/ngsi-ld/v1/csourceRegistrations", _json),
]
endpoint = st.sampled_from(ENDPOINTS).flatmap(lambda e: st.tuples(st.just(e[0]), st.just(e[1]), e[2],
                                                                  st.sampled_from(["application/json",
                                                                                   "application/ld+json"])))


def body_target(client: httpx.Client, op: tuple[str, str, Any, str]) -> None:
    method, path, body, media = op
    if media == "application/ld+json" and isinstance(body, dict):
        body = {**body, "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"}
    try:
        content = json.dumps(body).encode()
    except (ValueError, TypeError):
        return
    check(lambda: client.request(method, path, content=content, headers={"Content-Type": media}),
          f"{method} {path} {content[:300]!r}")


# ---------------------------------------------------------------- the OpenAPI operations

def openapi_operations() -> list[tuple[str, str, list[dict[str, Any]], bool]]:
    """(method, path template, parameters, has a body) of every operation in the NGSI-LD OpenAPI."""
    spec = yaml.safe_load(SPEC.read_text())
    components = spec.get("components", {}).get("parameters", {})

    def resolve(p: dict[str, Any]) -> dict[str, Any]:
        ref = p.get("$ref")
        return components.get(ref.rsplit("/", 1)[-1], {}) if isinstance(ref, str) else p

    out = []
    for path, item in spec["paths"].items():
        common = [resolve(p) for p in item.get("parameters", [])]
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = common + [resolve(p) for p in op.get("parameters", [])]
            out.append((method.upper(), "/ngsi-ld/v1" + path, params, "requestBody" in op))
    return out


def _param_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    kind = schema.get("type")
    base: st.SearchStrategy[str]
    if kind == "integer":
        base = st.integers(-10, 10**12).map(str)
    elif kind == "boolean":
        base = st.sampled_from(["true", "false"])
    elif "enum" in schema:
        base = st.sampled_from([str(v) for v in schema["enum"]])
    else:
        base = st.one_of(st.text(max_size=20), q_text)
    return st.one_of(base, st.sampled_from(HOSTILE))


def operation_strategy(ops: list[tuple[str, str, list[dict[str, Any]], bool]]) -> st.SearchStrategy[Any]:
    def one(op: tuple[str, str, list[dict[str, Any]], bool]) -> st.SearchStrategy[Any]:
        method, path, params, has_body = op
        path_params = {p["name"]: _param_value(p.get("schema", {})) for p in params if p.get("in") == "path"}
        query = {p["name"]: _param_value(p.get("schema", {})) for p in params if p.get("in") == "query"}
        return st.tuples(st.just(method), st.just(path), st.fixed_dictionaries(path_params),
                         st.fixed_dictionaries({}, optional=query), _json if has_body else st.none())

    return st.sampled_from(ops).flatmap(one)


def openapi_target(client: httpx.Client, op: tuple[str, str, dict[str, str], dict[str, str], Any]) -> None:
    method, template, path_params, query, body = op
    path = template
    for name, value in path_params.items():
        path = path.replace("{" + name + "}", quote(value, safe="") or "x")
    kwargs: dict[str, Any] = {"params": query}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    check(lambda: client.request(method, path, **kwargs), f"{method} {path} {query!r} {str(body)[:200]}")
