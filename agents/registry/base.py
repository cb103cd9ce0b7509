"""The registry interface and the SQL both stores share.

Groups and devices are kept as the provisioning API documents (JSON) beside
the columns they are looked up by; a group is unique by (resource, apikey) as
in iotagent-node-lib, a device by (service, service path, device_id), and a
LoRaWAN device also by its DevEUI (an EUI-64 names one radio in the world).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.lorawan.provisioning import section
from models.vocabulary import Doc

__all__ = ["INDEXES", "MIGRATIONS", "SCHEMA", "DeadLetter", "Duplicate", "Page", "Registry", "dev_eui_of"]


class Duplicate(Exception):
    """A group or device that already exists."""


@dataclass(frozen=True, slots=True)
class Page:
    count: int
    items: list[Doc]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected southbound message, kept for the integrator."""

    received_at: str
    reason: str
    detail: str
    transport: str = ""
    protocol: str = ""
    apikey: str = ""
    device_id: str = ""
    topic: str | None = None
    service: str = ""
    service_path: str = ""
    payload: str = ""
    attribute: str | None = None  # the one attribute refused, when the rest of the message was kept
    extra: Doc = field(default_factory=dict)


SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agent_groups (
        service TEXT NOT NULL, subservice TEXT NOT NULL, resource TEXT NOT NULL, apikey TEXT NOT NULL,
        doc TEXT NOT NULL, PRIMARY KEY (resource, apikey))""",
    "CREATE INDEX IF NOT EXISTS agent_groups_apikey ON agent_groups (apikey)",
    """CREATE TABLE IF NOT EXISTS agent_devices (
        service TEXT NOT NULL, subservice TEXT NOT NULL, device_id TEXT NOT NULL, apikey TEXT NOT NULL,
        doc TEXT NOT NULL, created_seq {serial}, PRIMARY KEY (service, subservice, device_id))""",
    "CREATE INDEX IF NOT EXISTS agent_devices_id ON agent_devices (device_id)",
    """CREATE TABLE IF NOT EXISTS agent_dead_letters (
        id {serial} PRIMARY KEY, received_at TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
        transport TEXT NOT NULL, protocol TEXT NOT NULL, apikey TEXT NOT NULL, device_id TEXT NOT NULL,
        topic TEXT, service TEXT NOT NULL, service_path TEXT NOT NULL, payload TEXT NOT NULL, attribute TEXT)""",
    "CREATE INDEX IF NOT EXISTS agent_dead_letters_reason ON agent_dead_letters (reason)",
    "CREATE INDEX IF NOT EXISTS agent_dead_letters_service ON agent_dead_letters (service, service_path)",
    # Commands on their way to devices (agents.commands): one per device and command name, as
    # iotagent-node-lib's command registry keeps them (a newer value replaces a pending one).
    """CREATE TABLE IF NOT EXISTS agent_commands (
        service TEXT NOT NULL, subservice TEXT NOT NULL, device_id TEXT NOT NULL, name TEXT NOT NULL,
        value TEXT NOT NULL, status TEXT NOT NULL, polling INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (service, subservice, device_id, name))""",
    "CREATE INDEX IF NOT EXISTS agent_commands_expiry ON agent_commands (expires_at)",
)

#: columns added after a store may have been created: (table, column, SQL type), added at open when missing
MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    ("agent_dead_letters", "attribute", "TEXT"),
    ("agent_devices", "dev_eui", "TEXT"),  # a LoRaWAN device's DevEUI (upper case), NULL for the others
    ("agent_commands", "ref", "TEXT"),  # a LoRaWAN downlink's id at the network server (its events name it)
)

#: indexes on migrated columns, made once the columns exist
INDEXES: tuple[str, ...] = (
    "CREATE UNIQUE INDEX IF NOT EXISTS agent_devices_dev_eui ON agent_devices (dev_eui)",
    "CREATE INDEX IF NOT EXISTS agent_commands_ref ON agent_commands (ref)",
)


def _dump(doc: Doc) -> str:
    return orjson.dumps(doc).decode()


def _load(text: Any) -> Doc:
    return orjson.loads(text)  # type: ignore[no-any-return]


def dev_eui_of(doc: Doc) -> str | None:
    """The DevEUI a device document provisions (internal_attributes.lorawan.dev_eui), upper case; None if none."""
    eui = (section(doc) or {}).get("dev_eui")
    return eui.upper() if isinstance(eui, str) and eui else None


class CommandsMixin(abc.ABC):
    """Pending commands: what `agents.commands` keeps between the NGSI-LD update and the device's answer."""

    @abc.abstractmethod
    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def _execute(self, sql: str, *args: Any) -> int: ...

    async def put_command(self, service: str, subservice: str, device_id: str, name: str, value: Any, status: str,
                          polling: bool, created_at: float, expires_at: float, ref: str | None = None) -> None:
        """Keep a command (replacing a pending one of the same name); `ref` names it at a LoRaWAN network server."""
        await self._execute("DELETE FROM agent_commands WHERE service = ? AND subservice = ? AND device_id = ?"
                            " AND name = ?", service, subservice, device_id, name)
        await self._execute(
            "INSERT INTO agent_commands (service, subservice, device_id, name, value, status, polling, created_at,"
            " expires_at, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            service, subservice, device_id, name, _dump({"v": value}), status, int(polling), created_at, expires_at,
            ref)

    async def command_by_ref(self, ref: str) -> Doc | None:
        """The command a LoRaWAN network server's downlink event names, with its device's keys."""
        rows = await self._fetch("SELECT service, subservice, device_id, name, value, status FROM agent_commands"
                                 " WHERE ref = ?", ref)
        if not rows:
            return None
        r = rows[0]
        return {"service": r[0], "subservice": r[1], "device_id": r[2], "name": r[3], "value": _load(r[4])["v"],
                "status": r[5]}

    async def commands_with_status(self, status: str) -> list[Doc]:
        """Every device's commands in one status, oldest first (LoRaWAN downlinks still to hand over, say)."""
        rows = await self._fetch("SELECT service, subservice, device_id, name FROM agent_commands WHERE status = ?"
                                 " ORDER BY created_at", status)
        return [{"service": r[0], "subservice": r[1], "device_id": r[2], "name": r[3]} for r in rows]

    async def commands_of(self, service: str, subservice: str, device_id: str,
                          status: str | None = None) -> list[Doc]:
        """A device's commands, oldest first (of one status when given)."""
        sql = ("SELECT name, value, status, polling, created_at, expires_at, ref FROM agent_commands WHERE service = ?"
               " AND subservice = ? AND device_id = ?")
        args: list[Any] = [service, subservice, device_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        rows = await self._fetch(sql + " ORDER BY created_at, name", *args)
        return [{"name": r[0], "value": _load(r[1])["v"], "status": r[2], "polling": bool(r[3]), "created_at": r[4],
                 "expires_at": r[5], "ref": r[6]} for r in rows]

    async def set_command_status(self, service: str, subservice: str, device_id: str, name: str, status: str) -> bool:
        n = await self._execute("UPDATE agent_commands SET status = ? WHERE service = ? AND subservice = ?"
                                " AND device_id = ? AND name = ?", status, service, subservice, device_id, name)
        return n > 0

    async def remove_command(self, service: str, subservice: str, device_id: str, name: str) -> bool:
        n = await self._execute("DELETE FROM agent_commands WHERE service = ? AND subservice = ? AND device_id = ?"
                                " AND name = ?", service, subservice, device_id, name)
        return n > 0

    async def expired_commands(self, now: float) -> list[Doc]:
        """Commands whose time ran out, with their device's keys."""
        rows = await self._fetch("SELECT service, subservice, device_id, name FROM agent_commands WHERE expires_at <= ?"
                                 " ORDER BY expires_at", now)
        return [{"service": r[0], "subservice": r[1], "device_id": r[2], "name": r[3]} for r in rows]


class Registry(CommandsMixin):
    """Storage of groups, devices and dead letters; SQL written once with `?` placeholders.

    `generation` goes up after every write to groups or devices (whether it
    succeeded or not), so a reader that cached what it looked up (the
    ingestor does) can tell that its copy may be stale. It counts this
    object's writes only: writes by another process sharing the store are not
    seen, hence the time limit on such caches.
    """

    _generation: int = 0  # class default; the first write gives the instance its own

    @property
    def generation(self) -> int:
        """A counter bumped after each group or device write through this object."""
        return self._generation

    def _changed(self) -> None:
        self._generation += 1

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def _execute(self, sql: str, *args: Any) -> int:
        """Run a statement, return the number of rows it touched; raise Duplicate on a unique violation."""

    # groups -----------------------------------------------------------------

    async def create_groups(self, service: str, subservice: str, groups: list[Doc]) -> None:
        """Insert every group or none (Duplicate names the first that exists)."""
        try:
            for g in groups:
                if await self.get_group_by_key(g.get("resource", ""), g.get("apikey", "")) is not None:
                    raise Duplicate(f"{g.get('resource', '')}|{g.get('apikey', '')}")
            for g in groups:
                await self._execute(
                    "INSERT INTO agent_groups (service, subservice, resource, apikey, doc) VALUES (?, ?, ?, ?, ?)",
                    service, subservice, g.get("resource", ""), g.get("apikey", ""), _dump(g),
                )
        finally:
            self._changed()

    async def list_groups(self, service: str, subservice: str | None, limit: int | None = None, offset: int = 0) -> Page:
        where, args = "service = ?", [service]
        if subservice is not None:
            where += " AND subservice = ?"
            args.append(subservice)
        count = (await self._fetch(f"SELECT COUNT(*) FROM agent_groups WHERE {where}", *args))[0][0]
        sql = f"SELECT doc FROM agent_groups WHERE {where} ORDER BY resource, apikey"
        rows = await self._fetch(sql + _page(limit, offset), *args)
        return Page(int(count), [_load(r[0]) for r in rows])

    async def get_group_by_key(self, resource: str, apikey: str) -> Doc | None:
        rows = await self._fetch("SELECT doc FROM agent_groups WHERE resource = ? AND apikey = ?", resource, apikey)
        return _load(rows[0][0]) if rows else None

    async def get_group(self, service: str, subservice: str, resource: str, apikey: str) -> Doc | None:
        rows = await self._fetch(
            "SELECT doc FROM agent_groups WHERE service = ? AND subservice = ? AND resource = ? AND apikey = ?",
            service, subservice, resource, apikey,
        )
        return _load(rows[0][0]) if rows else None

    async def groups_by_apikey(self, apikey: str) -> list[Doc]:
        rows = await self._fetch("SELECT doc FROM agent_groups WHERE apikey = ? ORDER BY resource", apikey)
        return [_load(r[0]) for r in rows]

    async def replace_group(self, service: str, subservice: str, resource: str, apikey: str, doc: Doc) -> bool:
        try:
            n = await self._execute(
                "UPDATE agent_groups SET doc = ? WHERE service = ? AND subservice = ? AND resource = ? AND apikey = ?",
                _dump(doc), service, subservice, resource, apikey,
            )
            return n > 0
        finally:
            self._changed()

    async def delete_group(self, service: str, subservice: str, resource: str, apikey: str) -> bool:
        try:
            n = await self._execute(
                "DELETE FROM agent_groups WHERE service = ? AND subservice = ? AND resource = ? AND apikey = ?",
                service, subservice, resource, apikey,
            )
            return n > 0
        finally:
            self._changed()

    # devices ----------------------------------------------------------------

    async def create_device(self, doc: Doc) -> None:
        """Insert a device; Duplicate when its (service, path, id), or its DevEUI, is taken."""
        try:
            await self._execute(
                "INSERT INTO agent_devices (service, subservice, device_id, apikey, doc, dev_eui) VALUES (?, ?, ?, ?, ?, ?)",
                doc.get("service", ""), doc.get("service_path", "/"), doc["device_id"], doc.get("apikey") or "",
                _dump(doc), dev_eui_of(doc),
            )
        finally:
            self._changed()

    async def list_devices(self, service: str, subservice: str | None, limit: int | None = None, offset: int = 0) -> Page:
        where, args = "service = ?", [service]
        if subservice is not None:
            where += " AND subservice = ?"
            args.append(subservice)
        count = (await self._fetch(f"SELECT COUNT(*) FROM agent_devices WHERE {where}", *args))[0][0]
        sql = f"SELECT doc FROM agent_devices WHERE {where} ORDER BY created_seq, device_id"
        rows = await self._fetch(sql + _page(limit, offset), *args)
        return Page(int(count), [_load(r[0]) for r in rows])

    async def get_device(self, service: str, subservice: str | None, device_id: str) -> Doc | None:
        if subservice is None:
            rows = await self._fetch(
                "SELECT doc FROM agent_devices WHERE service = ? AND device_id = ? ORDER BY subservice", service, device_id
            )
        else:
            rows = await self._fetch(
                "SELECT doc FROM agent_devices WHERE service = ? AND subservice = ? AND device_id = ?",
                service, subservice, device_id,
            )
        return _load(rows[0][0]) if rows else None

    async def devices_by_dev_eui(self, dev_eui: str) -> list[Doc]:
        """The LoRaWAN device with this DevEUI (any service; at most one: the column is unique)."""
        rows = await self._fetch("SELECT doc FROM agent_devices WHERE dev_eui = ?", dev_eui.upper())
        return [_load(r[0]) for r in rows]

    async def lorawan_devices(self) -> list[Doc]:
        """Every LoRaWAN device of every service (the network server connections they need)."""
        rows = await self._fetch("SELECT doc FROM agent_devices WHERE dev_eui IS NOT NULL ORDER BY created_seq")
        return [_load(r[0]) for r in rows]

    async def all_groups(self) -> list[Doc]:
        """Every group of every service (groups are few: the LoRaWAN applications to listen to)."""
        rows = await self._fetch("SELECT doc FROM agent_groups ORDER BY service, subservice, resource, apikey")
        return [_load(r[0]) for r in rows]

    async def devices_by_id(self, device_id: str) -> list[Doc]:
        """Every device with this id, in any service (the southbound lookup narrows by apikey)."""
        rows = await self._fetch("SELECT doc FROM agent_devices WHERE device_id = ?", device_id)
        return [_load(r[0]) for r in rows]

    async def replace_device(self, doc: Doc) -> bool:
        try:
            n = await self._execute(
                "UPDATE agent_devices SET doc = ?, apikey = ?, dev_eui = ? WHERE service = ? AND subservice = ?"
                " AND device_id = ?", _dump(doc), doc.get("apikey") or "", dev_eui_of(doc), doc.get("service", ""),
                doc.get("service_path", "/"), doc["device_id"],
            )
            return n > 0
        finally:
            self._changed()

    async def delete_device(self, service: str, subservice: str, device_id: str) -> bool:
        try:
            n = await self._execute(
                "DELETE FROM agent_devices WHERE service = ? AND subservice = ? AND device_id = ?",
                service, subservice, device_id,
            )
            return n > 0
        finally:
            self._changed()

    # dead letters -----------------------------------------------------------

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._execute(
            "INSERT INTO agent_dead_letters (received_at, reason, detail, transport, protocol, apikey, device_id,"
            " topic, service, service_path, payload, attribute) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            letter.received_at, letter.reason, letter.detail, letter.transport, letter.protocol, letter.apikey,
            letter.device_id, letter.topic, letter.service, letter.service_path, letter.payload, letter.attribute,
        )

    @staticmethod
    def _dead_letter_filter(service: str | None, service_path: str | None, **equal: str | None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, value in (("service", service), ("service_path", service_path), *equal.items()):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    async def list_dead_letters(
        self, *, reason: str | None = None, apikey: str | None = None, device_id: str | None = None,
        service: str | None = None, service_path: str | None = None, limit: int | None = 100, offset: int = 0,
    ) -> Page:
        """Rejected messages, newest first; `service`/`service_path` scope them to a tenant (None: any)."""
        where, args = self._dead_letter_filter(service, service_path, reason=reason, apikey=apikey,
                                               device_id=device_id)
        count = (await self._fetch(f"SELECT COUNT(*) FROM agent_dead_letters{where}", *args))[0][0]
        rows = await self._fetch(
            "SELECT id, received_at, reason, detail, transport, protocol, apikey, device_id, topic, service,"
            f" service_path, payload, attribute FROM agent_dead_letters{where} ORDER BY id DESC" + _page(limit, offset),
            *args,
        )
        keys = ("id", "received_at", "reason", "detail", "transport", "protocol", "apikey", "device_id", "topic",
                "service", "service_path", "payload", "attribute")
        return Page(int(count), [dict(zip(keys, r)) for r in rows])

    async def purge_dead_letters(self, before: str | None = None, *, service: str | None = None,
                                 service_path: str | None = None) -> int:
        """Delete rejected messages (of one tenant when `service` is given), those before `before` if given."""
        where, args = self._dead_letter_filter(service, service_path)
        if before is not None:
            where += (" AND" if where else " WHERE") + " received_at < ?"
            args.append(before)
        return await self._execute(f"DELETE FROM agent_dead_letters{where}", *args)


def _page(limit: int | None, offset: int) -> str:
    sql = ""
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if offset:
        sql += (" LIMIT -1" if limit is None else "") + f" OFFSET {int(offset)}"
    return sql
