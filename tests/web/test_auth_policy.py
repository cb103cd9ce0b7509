"""A vector per rule of the policy tables: which scope, on which tenants, each request needs."""

from __future__ import annotations

import pytest

from web.auth.grants import Grant, Principal, parse_grant
from web.auth.policy import BROKER, HISTORY, PROVISIONING, Policy, tenants_of

# (policy, method, path, headers, query) -> (need, tenants checked: None = every tenant, "any" = some tenant)
VECTORS: list[tuple[Policy, str, str, dict[str, str], dict[str, list[str]], str, object]] = [
    (BROKER, "GET", "/version", {}, {}, "public", [""]),
    (BROKER, "GET", "/health", {}, {}, "public", [""]),
    (BROKER, "GET", "/ready", {}, {}, "public", [""]),
    (BROKER, "GET", "/metrics", {}, {}, "public", [""]),
    (BROKER, "POST", "/version", {}, {}, "authenticated", [""]),
    (BROKER, "POST", "/ngsi-ld/v1/federation/notify/Q2hhbmdlTWVQbGVhc2UxMjM", {}, {}, "public", [""]),
    (BROKER, "POST", "/ngsi-ld/v1/federation/notify/short", {"ngsild-tenant": "aix"}, {}, "write", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/entities/urn:x", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/entities", {}, {}, "read", [""]),
    (BROKER, "POST", "/ngsi-ld/v1/entities", {"ngsild-tenant": "aix", "fiware-service": "marseille"}, {}, "write", ["aix"]),
    (BROKER, "DELETE", "/ngsi-ld/v1/entities", {"ngsild-tenant": "aix"}, {}, "admin", ["aix"]),
    (BROKER, "DELETE", "/ngsi-ld/v1/entities/urn:x", {"ngsild-tenant": "aix"}, {}, "write", ["aix"]),
    (BROKER, "POST", "/ngsi-ld/v1/entityOperations/upsert", {"ngsild-tenant": "aix"}, {}, "write", ["aix"]),
    (BROKER, "POST", "/ngsi-ld/v1/entityOperations/query", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "POST", "/ngsi-ld/v1/temporal/entityOperations/query", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "POST", "/ngsi-ld/v1/temporal/entities", {"ngsild-tenant": "aix"}, {}, "write", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/temporal/entities/urn:x", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "POST", "/ngsi-ld/v1/subscriptions", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "DELETE", "/ngsi-ld/v1/subscriptions/urn:s", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/types", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/attributes", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/info/sourceIdentity", {"ngsild-tenant": "aix"}, {}, "read", ["aix"]),
    (BROKER, "GET", "/ngsi-ld/v1/jsonldContexts", {"ngsild-tenant": "aix"}, {}, "read", None),
    (BROKER, "GET", "/ngsi-ld/v1/jsonldContexts/abc", {}, {}, "authenticated", [""]),
    (BROKER, "POST", "/ngsi-ld/v1/jsonldContexts", {}, {}, "write", "any"),
    (BROKER, "DELETE", "/ngsi-ld/v1/jsonldContexts/abc", {"ngsild-tenant": "aix"}, {}, "admin", None),
    (BROKER, "GET", "/v2/entities", {"fiware-service": "Aix", "ngsild-tenant": "marseille"}, {}, "read", ["Aix"]),
    (BROKER, "GET", "/v2/entities", {"ngsild-tenant": "marseille"}, {}, "read", [""]),
    (BROKER, "POST", "/v2/notify", {"fiware-service": "aix", "ngsild-tenant": "marseille"}, {}, "write", ["marseille"]),
    (BROKER, "POST", "/v2/notify", {"fiware-service": "aix"}, {}, "write", ["aix"]),
    (BROKER, "POST", "/v2/subscribe", {"fiware-service": "aix"}, {}, "write", ["aix"]),
    (BROKER, "DELETE", "/v2/entities/urn:x", {"fiware-service": "aix"}, {}, "write", ["aix"]),
    (BROKER, "DELETE", "/v2/types/T", {"fiware-service": "aix"}, {}, "admin", ["aix"]),
    (BROKER, "GET", "/unknown", {}, {}, "authenticated", [""]),
    (HISTORY, "GET", "/version", {}, {}, "public", [""]),
    (HISTORY, "GET", "/v2", {}, {}, "authenticated", [""]),
    (HISTORY, "GET", "/v2/attrs/no2", {"fiware-service": "aix"}, {}, "read", ["aix"]),
    (PROVISIONING, "GET", "/iot/about", {}, {}, "public", [""]),
    (PROVISIONING, "GET", "/iot/services", {"fiware-service": "aix"}, {}, "read", ["aix"]),
    (PROVISIONING, "POST", "/iot/services", {"fiware-service": "aix"}, {}, "admin", ["aix"]),
    (PROVISIONING, "DELETE", "/iot/groups", {"fiware-service": "aix"}, {}, "admin", ["aix"]),
    (PROVISIONING, "GET", "/iot/devices/d1", {"fiware-service": "aix"}, {}, "read", ["aix"]),
    (PROVISIONING, "POST", "/iot/devices", {"fiware-service": "aix"}, {}, "write", ["aix"]),
    (PROVISIONING, "PUT", "/iot/devices/d1", {"fiware-service": "aix"}, {}, "write", ["aix"]),
    (PROVISIONING, "GET", "/iot/rejections", {"fiware-service": "aix"}, {"service": ["mars"]}, "read", ["aix"]),
    (PROVISIONING, "DELETE", "/iot/rejections", {"fiware-service": "aix"}, {}, "admin", ["aix"]),
    (PROVISIONING, "GET", "/iot/outbox/dead-letters", {"fiware-service": "aix"}, {}, "read", ["aix"]),
    (PROVISIONING, "POST", "/iot/outbox/retry", {"fiware-service": "aix"}, {}, "admin", ["aix"]),
    (PROVISIONING, "GET", "/iot/codecs/decentlab/dl-pm", {}, {}, "authenticated", [""]),
]


@pytest.mark.parametrize(("policy", "method", "path", "headers", "query", "need", "tenants"), VECTORS)
def test_policy_vector(policy: Policy, method: str, path: str, headers: dict[str, str], query: dict[str, list[str]],
                       need: str, tenants: object) -> None:
    rule = policy.match(method, path)
    assert rule.need == need
    if rule.tenants.any_tenant:
        assert tenants == "any"
    elif rule.tenants.every_tenant:
        assert tenants is None
    else:
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        assert tenants_of(rule.tenants, raw, query) == tenants


def test_a_header_sent_twice_has_each_value_checked() -> None:
    rule = BROKER.match("GET", "/ngsi-ld/v1/entities")
    raw = [(b"NGSILD-Tenant", b"aix"), (b"ngsild-tenant", b"marseille")]
    assert tenants_of(rule.tenants, raw, {}) == ["aix", "marseille"]


@pytest.mark.parametrize(("grant", "tenant", "scope", "fold", "allowed"), [
    ("aix:read", "aix", "read", False, True),
    ("aix:read", "aix", "write", False, False),
    ("aix:admin", "aix", "write", False, True),
    ("aix:write", "marseille", "read", False, False),
    ("*:read", "anything", "read", False, True),
    ("*:read", "anything", "write", False, False),
    ("@default:write", "", "write", False, True),
    ("aix:read", "", "read", False, False),
    ("Aix:read", "aix", "read", False, False),
    ("Aix:read", "aix", "read", True, True),
])
def test_grants(grant: str, tenant: str, scope: str, fold: bool, allowed: bool) -> None:
    parsed = parse_grant(grant)
    assert parsed is not None
    assert Principal("p", "apikey", frozenset({parsed})).allows(tenant, scope, fold_case=fold) is allowed


@pytest.mark.parametrize("text", ["aix", "aix:root", ":read", "aix:read:x", "a b:read", "offline_access"])
def test_what_is_not_a_grant(text: str) -> None:
    assert parse_grant(text) is None


def test_grant_text_round_trips() -> None:
    assert str(Grant("", "write")) == "@default:write" and parse_grant("@default:write") == Grant("", "write")
