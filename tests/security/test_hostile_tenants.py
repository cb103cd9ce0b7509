"""Hostile tenant names reach neither the filesystem nor SQL unescaped, on both stores and every API.

Quotes and SQL, `../` paths, shell syntax, backslashes, unicode (sent as
UTF-8 bytes, read as Latin-1 as HTTP headers are), a very long name: each is
a tenant like any other (its own data, invisible to the others) or a clear
4xx, never a 500, a new file or a changed schema.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests import services
from tests.security.conftest import Platform

API = "/ngsi-ld/v1"
HOSTILE = [
    "o'brien\"; DROP TABLE entities; --",
    "../../../../tmp/metropole-pwned",
    "..\\..\\windows\\system32",
    "$(touch /tmp/metropole-pwned)`id`",
    "%2e%2e%2fescape",
    "Aïx-en-Provence-東京",
    "x" * 240,
]
TOO_LONG = "".join(f"{i:04x}" for i in range(2_500))  # 10,000 characters that do not compress


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _tables(schema_like: str) -> set[tuple[str, str]]:
    async def read() -> set[tuple[str, str]]:
        conn = await asyncpg.connect(services.POSTGRES_DSN)
        try:
            rows = await conn.fetch("SELECT table_schema, table_name FROM information_schema.tables "
                                    "WHERE table_schema LIKE $1", schema_like)
            return {(r[0], r[1]) for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def _header(name: str) -> bytes:
    return name.encode("utf-8")


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: n[:12])
def test_a_hostile_tenant_is_just_a_tenant(platform: Platform, name: str) -> None:
    files_before = _files(platform.data)
    tmp_before = {p.name for p in Path("/tmp").iterdir() if "pwned" in p.name}
    tables_before = _tables("sec_%") if platform.store == "postgres" else set()
    kind = f"Hostile{uuid.uuid4().hex[:6]}"
    eid = f"urn:ngsi-ld:{kind}:1"
    entity = {"id": eid, "type": kind, "no2": {"type": "Property", "value": 3, "observedAt": "2026-11-26T07:00:00Z"}}
    headers = httpx.Headers([(b"X-API-Key", platform.keys["ops"].encode()), (b"NGSILD-Tenant", _header(name))])
    with httpx.Client(base_url=platform.broker, headers=headers, timeout=30) as c:
        created = c.post(f"{API}/entities", json=entity)
        assert created.status_code == 201, created.text
        assert c.get(f"{API}/entities/{eid}").json()["no2"]["value"] == 3
        assert [e["id"] for e in c.get(f"{API}/entities", params={"type": kind}).json()] == [eid]
        assert c.get(f"{API}/temporal/entities/{eid}").status_code == 200
        assert kind in c.get(f"{API}/types").text
        sub = {"type": "Subscription", "entities": [{"type": kind}],
               "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}}}
        assert c.post(f"{API}/subscriptions", json=sub).status_code == 201
        assert len(c.get(f"{API}/subscriptions").json()) == 1
    with httpx.Client(base_url=platform.broker, headers={"X-API-Key": platform.keys["ops"],
                                                         "NGSILD-Tenant": "plain"}, timeout=30) as plain:
        assert plain.get(f"{API}/entities/{eid}").status_code == 404
    # the history API admits only QuantumLeap's service names: anything else is a 400, never a 500
    hist_headers = httpx.Headers([(b"X-API-Key", platform.keys["ops"].encode()), (b"Fiware-Service", _header(name))])
    r = httpx.get(f"{platform.history}/v2/entities", headers=hist_headers, timeout=30)
    assert r.status_code in (400, 404), r.text
    # the provisioning API stores the service as data
    prov_headers = httpx.Headers([(b"X-API-Key", platform.keys["ops"].encode()), (b"fiware-service", _header(name)),
                                  (b"fiware-servicepath", b"/")])
    apikey = uuid.uuid4().hex[:10]
    group = {"services": [{"apikey": apikey, "entity_type": kind, "resource": "/iot/json"}]}
    r = httpx.post(f"{platform.provisioning}/iot/services", json=group, headers=prov_headers, timeout=30)
    assert r.status_code == 201, r.text
    assert apikey in httpx.get(f"{platform.provisioning}/iot/services", headers=prov_headers, timeout=30).text
    # nothing new on disk but the stores' own files, no new table anywhere
    new_files = _files(platform.data) - files_before
    assert all(Path(f).name.split(".")[0] in ("broker", "agents") for f in new_files), new_files
    assert {p.name for p in Path("/tmp").iterdir() if "pwned" in p.name} == tmp_before
    if platform.store == "postgres":
        assert _tables("sec_%") == tables_before


def test_a_tenant_name_too_long_for_an_index_is_a_clear_400(platform: Platform) -> None:
    headers = {"X-API-Key": platform.keys["ops"], "NGSILD-Tenant": TOO_LONG}
    entity = {"id": "urn:ngsi-ld:Long:1", "type": "Long"}
    r = httpx.post(f"{platform.broker}{API}/entities", json=entity, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert "tenant" in r.json()["detail"].lower()
    prov = {"X-API-Key": platform.keys["ops"], "fiware-service": TOO_LONG, "fiware-servicepath": "/"}
    r = httpx.get(f"{platform.provisioning}/iot/services", headers=prov, timeout=30)
    assert r.status_code == 400, r.text
