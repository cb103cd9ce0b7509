"""The durable map of distributed subscriptions (clause 5.8.1.4): what survives a broker restart.

Kept in the store's registry (migration 6, both stores) under two kinds, so no
schema change is needed:

    'relay'        tenant, id = the subscription id here; doc = the relay token,
                   the copies (registration id -> copy id at the source, and
                   the source's endpoint, tenant, contextSourceInfo and
                   operations as they were when the copy was made, so that a
                   copy can still be deleted after its registration is gone)
                   the registrations whose copy is still to be made and the
                   copies still to be deleted (source unreachable: retried)
    'relay-token'  tenant '' (the relay endpoint names no tenant), id = the
                   token; doc = {tenant, subscription}: what a notification
                   arriving at /federation/notify/<token> is for
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.store.base import RegistryDoc, Store

KIND = "relay"
TOKEN_KIND = "relay-token"
SOURCE_MEMBERS = ("endpoint", "tenant", "contextSourceInfo", "operations", "mode")
"""what of a registration a copy keeps: where and how to reach the source (forward.Forwarder.headers)"""


@dataclass(slots=True)
class Copy:
    """One copy of a subscription at a source."""

    registration: str
    copy_id: str
    source: dict[str, Any]
    """the registration members of SOURCE_MEMBERS (expanded form) when the copy was made"""
    entities: list[Any] | None = None
    """the copy's entities (the subscription's, reduced to the types the registration offers)"""

    @property
    def endpoint(self) -> str:
        return str(self.source.get("endpoint", "")).rstrip("/")


@dataclass(slots=True)
class RelayRecord:
    """The copies of one subscription of this broker, and the token their notifications come back with."""

    tenant: str
    sub_id: str
    token: str
    copies: dict[str, Copy] = field(default_factory=dict)
    """by registration id"""
    pending: dict[str, int] = field(default_factory=dict)
    """registration id -> failed attempts at making its copy"""
    orphans: list[Copy] = field(default_factory=list)
    """copies to delete whose source could not be reached (tried again)"""

    def to_doc(self) -> dict[str, Any]:
        return {"token": self.token, "pending": dict(self.pending),
                "copies": [_copy_doc(c) for c in self.copies.values()], "orphans": [_copy_doc(c) for c in self.orphans]}

    @classmethod
    def from_item(cls, item: RegistryDoc) -> RelayRecord:
        doc = item.doc
        copies = {c.registration: c for c in map(_copy_of, doc.get("copies") or [])}
        return cls(item.tenant, item.id, str(doc["token"]), copies,
                   {str(k): int(v) for k, v in (doc.get("pending") or {}).items()},
                   [_copy_of(c) for c in doc.get("orphans") or []])


def _copy_doc(c: Copy) -> dict[str, Any]:
    return {"registration": c.registration, "copy": c.copy_id, "source": c.source, "entities": c.entities}


def _copy_of(c: dict[str, Any]) -> Copy:
    return Copy(c["registration"], c["copy"], dict(c.get("source") or {}), c.get("entities"))


def source_of(reg: dict[str, Any]) -> dict[str, Any]:
    """The members of an (expanded) registration a copy keeps."""
    return {k: reg[k] for k in SOURCE_MEMBERS if k in reg}


class RelayStore:
    """Load, save and drop RelayRecords in the store's registry."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def load(self, tenant: str, sub_id: str) -> RelayRecord | None:
        item = await self.store.registry_get(KIND, tenant, sub_id)
        return RelayRecord.from_item(item) if item is not None else None

    async def all(self) -> list[RelayRecord]:
        """Every record of every tenant (what a starting broker resumes)."""
        return [RelayRecord.from_item(i) for i in await self.store.registry_list(KIND, None)]

    async def of_tenant(self, tenant: str) -> list[RelayRecord]:
        """Every record of one tenant."""
        return [RelayRecord.from_item(i) for i in await self.store.registry_list(KIND, tenant)]

    async def save(self, record: RelayRecord) -> None:
        """Insert or replace the record; the token's entry is written first, so a copy never names
        a token this broker would not know."""
        token = RegistryDoc(TOKEN_KIND, "", record.token, {"tenant": record.tenant, "subscription": record.sub_id},
                            None, {})
        if not await self.store.registry_put(token, create=True):
            await self.store.registry_put(token, create=False)
        item = RegistryDoc(KIND, record.tenant, record.sub_id, record.to_doc(), None, {})
        if not await self.store.registry_put(item, create=True):
            await self.store.registry_put(item, create=False)

    async def drop(self, record: RelayRecord) -> None:
        await self.store.registry_delete(KIND, record.tenant, record.sub_id)
        await self.store.registry_delete(TOKEN_KIND, "", record.token)

    async def by_token(self, token: str) -> tuple[str, str] | None:
        """(tenant, subscription id) the token relays for, or None."""
        item = await self.store.registry_get(TOKEN_KIND, "", token)
        if item is None:
            return None
        return str(item.doc["tenant"]), str(item.doc["subscription"])
