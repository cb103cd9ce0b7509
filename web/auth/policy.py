"""Which scope, on which tenant, each request of each API needs: rule tables, first match wins.

A rule names the methods and path it covers, what it needs (`public`:
nothing; `authenticated`: any valid credential; `read`/`write`/`admin` on
the request's tenant) and where the tenant comes from, exactly where the
handler behind it reads it, so that no header the check skips can steer
the handler to another tenant:

- headers in order, the first present wins (QuantumLeap's writes take
  `NGSILD-Tenant` before `Fiware-Service`, httputil.py:4-15; its queries
  only `Fiware-Service`); none present is the default tenant; a header sent
  twice has each of its values checked;
- or a query parameter, whose absence means every tenant;
- `any_tenant`: the scope on at least one tenant (hosting an @context,
  which no tenant owns), `every_tenant`: on all (`*`).

The tables below are the policy; `tests/web/test_auth_policy.py` holds a
vector per rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.media import API

PUBLIC, AUTHENTICATED = "public", "authenticated"
READING = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class TenantSource:
    """Where a request's tenant is read (see the module docstring)."""

    headers: tuple[str, ...] = ()
    query: str | None = None
    fold_case: bool = False
    any_tenant: bool = False
    every_tenant: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """Methods (empty: any) and a path pattern (full match) -> what the request needs."""

    methods: frozenset[str]
    path: re.Pattern[str]
    need: str
    tenants: TenantSource = field(default_factory=TenantSource)


def rule(methods: str, path: str, need: str, tenants: TenantSource | None = None) -> Rule:
    """A rule from a method list ('GET HEAD', '*') and a regular expression for the path."""
    chosen = frozenset() if methods == "*" else frozenset(methods.split())
    return Rule(chosen, re.compile(path), need, tenants or TenantSource())


@dataclass(frozen=True, slots=True)
class Policy:
    """An ordered rule table; a request no rule covers needs a valid credential."""

    rules: tuple[Rule, ...]

    def match(self, method: str, path: str) -> Rule:
        """The first rule covering the request."""
        for r in self.rules:
            if (not r.methods or method in r.methods) and r.path.fullmatch(path):
                return r
        return _FALLBACK

    def __add__(self, other: Policy) -> Policy:
        return Policy(self.rules + other.rules)


_FALLBACK = Rule(frozenset(), re.compile(".*"), AUTHENTICATED)

NGSILD = TenantSource(headers=("ngsild-tenant",))
_EVERY = TenantSource(every_tenant=True)
_ANY = TenantSource(any_tenant=True)

OPERATIONS = (
    rule("GET HEAD", "/(version|health|ready|metrics)", PUBLIC),
)
"""What every server answers without credentials: version, liveness, readiness, metrics."""

NGSI_LD = Policy((
    *OPERATIONS,
    rule("GET HEAD", f"{API}/jsonldContexts", "read", _EVERY),  # the list shows every tenant's contexts
    rule("GET HEAD", f"{API}/jsonldContexts/.+", AUTHENTICATED),  # a context's URL is handed around in Link headers
    rule("POST", f"{API}/jsonldContexts", "write", _ANY),
    rule("*", f"{API}/jsonldContexts(/.*)?", "admin", _EVERY),  # delete, reload: shared by all tenants
    # a registered source's notification for a subscription copied to it (broker/federation/subs.py): the path's
    # 128-bit token, made for that copy alone, is the credential (a source holds none of ours); unknown: 404
    rule("POST", f"{API}/federation/notify/[A-Za-z0-9_-]{{16,}}", PUBLIC),
    rule("POST", f"{API}/(temporal/)?entityOperations/query", "read", NGSILD),
    rule("*", f"{API}/subscriptions(/.*)?", "read", NGSILD),  # a subscription is a standing query
    rule("DELETE", f"{API}/entities", "admin", NGSILD),  # purge (clause 5.6.21)
    rule("GET HEAD", f"{API}/.*", "read", NGSILD),
    rule("*", f"{API}/.*", "write", NGSILD),
))
"""The NGSI-LD API (port 1026)."""


def history(prefix: str = "/v2") -> Policy:
    """The QuantumLeap-compatible API under `prefix` (8668 serves it at /v2, the broker port mounts it at /v2)."""
    query = TenantSource(headers=("fiware-service",), fold_case=True)  # query_1T1E1A.py:38, params.query_tenant
    write = TenantSource(headers=("ngsild-tenant", "fiware-service"), fold_case=True)  # httputil.py:4-15
    return Policy((
        rule("GET HEAD", prefix, AUTHENTICATED),  # the resource list
        rule("POST", f"{prefix}/notify", "write", write),
        rule("POST", f"{prefix}/subscribe", "write", write),
        rule("DELETE", f"{prefix}/types/.+", "admin", write),  # a type's whole history, or its table
        rule("DELETE", f"{prefix}/.+", "write", write),
        rule("GET HEAD", f"{prefix}/.+", "read", query),
    ))


_SERVICE = TenantSource(headers=("fiware-service",))

PROVISIONING = Policy((
    *OPERATIONS,
    rule("GET HEAD", "/iot/about", PUBLIC),
    # rejections and the outbox are scoped by fiware-service, as the handlers read it (agents/provisioning/diagnostics.py)
    rule("GET HEAD", "/iot/(rejections|outbox(/.*)?)", "read", _SERVICE),
    rule("*", "/iot/(rejections|outbox(/.*)?)", "admin", _SERVICE),  # purge, retry, requeue: the operator's
    rule("GET HEAD", "/iot/codecs(/.*)?", AUTHENTICATED),  # the codec catalogue: no tenant's data
    rule("GET HEAD", "/iot/(services|groups)(/.*)?", "read", _SERVICE),
    rule("*", "/iot/(services|groups)(/.*)?", "admin", _SERVICE),  # a group is an API key: who may send data
    rule("GET HEAD", "/iot/devices(/.*)?", "read", _SERVICE),
    rule("*", "/iot/devices(/.*)?", "write", _SERVICE),
))
"""The IoT agents' provisioning API (port 4041)."""

HISTORY = Policy((*OPERATIONS, *history("/v2").rules))
"""The QuantumLeap-compatible API on its own port (8668)."""

BROKER = NGSI_LD + history("/v2")
"""The broker's port: the NGSI-LD API and the /v2 history API it mounts."""


def tenants_of(source: TenantSource, headers: Sequence[tuple[bytes, bytes]], query: dict[str, list[str]]) -> list[str] | None:
    """The tenants a request addresses (each must be granted); None means every tenant."""
    if source.query is not None:
        values = query.get(source.query)
        return None if not values else [v.strip() for v in values]
    for name in source.headers:
        raw = name.encode()
        values = [v.decode("latin-1").strip() for k, v in headers if k.lower() == raw]
        if values:
            return values
    return [""]
