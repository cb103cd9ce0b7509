"""Who a caller is and what it may do: scopes, grants on tenants, principals.

A grant is written `<tenant>:<scope>` wherever credentials are configured
(API key files, Keycloak roles, Keyrock roles):

    aix:read          read the tenant `aix`
    marseille:write   read and write `marseille` (write includes read)
    aix:admin         also manage it: service groups, purges, @context hosting (admin includes write)
    *:read            read every tenant (a federation partner, the open-data export)
    @default:write    the default tenant (no NGSILD-Tenant / Fiware-Service header)

Tenant names compare exactly, except on the QuantumLeap-compatible API where
QuantumLeap folds `Fiware-Service` to lower case (`City` and `city` are one
tenant there), so grants are folded too on that API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SCOPES = ("read", "write", "admin")
"""The scopes, each including the ones before it."""

ALL_TENANTS = "*"
DEFAULT_TENANT_NAME = "@default"
"""How grants name the default tenant ('' inside the platform)."""

_GRANT = re.compile(r"^(?P<tenant>[^:\s]+|\*):(?P<scope>read|write|admin)$")


def rank(scope: str) -> int:
    """0 for read, 1 for write, 2 for admin; ValueError for anything else."""
    return SCOPES.index(scope)


@dataclass(frozen=True, slots=True)
class Grant:
    """One scope on one tenant ('' the default tenant, '*' every tenant)."""

    tenant: str
    scope: str

    def __str__(self) -> str:
        name = DEFAULT_TENANT_NAME if self.tenant == "" else self.tenant
        return f"{name}:{self.scope}"


def parse_grant(text: str) -> Grant | None:
    """The grant a role or grant string names, None when it names none (other roles of an identity provider)."""
    match = _GRANT.match(text.strip())
    if match is None:
        return None
    tenant = match["tenant"]
    return Grant("" if tenant == DEFAULT_TENANT_NAME else tenant, match["scope"])


def parse_grants(texts: object) -> list[Grant]:
    """Every grant among `texts` (a list of role names, or one space/comma-separated string)."""
    if isinstance(texts, str):
        texts = re.split(r"[\s,]+", texts)
    if not isinstance(texts, (list, tuple, set, frozenset)):
        return []
    return [g for g in (parse_grant(t) for t in texts if isinstance(t, str)) if g is not None]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a name for logs and its grants."""

    name: str
    method: str  # "apikey", "oidc", "keyrock"
    grants: frozenset[Grant] = field(default_factory=frozenset)

    def allows(self, tenant: str, scope: str, *, fold_case: bool = False) -> bool:
        """Whether some grant gives `scope` (or more) on `tenant`."""
        need = rank(scope)
        if fold_case:
            tenant = tenant.lower()
        for grant in self.grants:
            if rank(grant.scope) < need:
                continue
            if grant.tenant == ALL_TENANTS:
                return True
            if (grant.tenant.lower() if fold_case else grant.tenant) == tenant:
                return True
        return False

    def allows_some(self, scope: str) -> bool:
        """Whether some grant gives `scope` (or more) on at least one tenant."""
        need = rank(scope)
        return any(rank(g.scope) >= need for g in self.grants)
