"""Per-service-group MQTT credentials: Mosquitto's password file and ACL file, written from the registry.

One MQTT user per service group: its username is the group's `mqtt_username`, or its apikey; its password
is the `mqtt_password` the operator set on the group, stored only as the hash Mosquitto's password file
holds. The user may publish only on its own apikey's measure and command-result topics and read its own
command topics; the agent's user (METROPOLE_AGENT_MQTT_USERNAME) reads every measure and command-result
topic and publishes the commands. Mosquitto reads both files again on SIGHUP.

The hash is Mosquitto's PBKDF2-SHA512 format, `$7$<iterations>$<base64 salt>$<base64 hash>`, as
mosquitto_passwd writes it (Mosquitto 2.0 src/password_mosq.h: `pw_sha512_pbkdf2 = 7`, `SALT_LEN 12`,
`PW_DEFAULT_ITERATIONS 101`; the iteration count is read back from each line, so ours may be higher).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.transports.mqtt import COMMAND_RESULT_TOPICS, MEASURE_TOPICS

__all__ = ["HASH_FIELD", "MqttUser", "acl_file", "hash_password", "password_file", "users_of", "verify_password"]

#: the group member holding the hash (the clear `mqtt_password` is never stored)
HASH_FIELD = "mqtt_password_hash"
ITERATIONS = 1000  # Mosquitto 2.1's default; 2.0 writes 101 and reads any count
SALT_BYTES = 12
#: what may not appear in a username: ':' ends it in the password file, blanks and control characters
#: would split an ACL line, and MQTT wildcards have no place in a name that becomes a topic level
_BAD_NAME = re.compile(r"[:\s+#/\x00-\x1f\x7f]")
_MEASURE_SUFFIXES = ("attrs", "attrs/+")
_PREFIXES = ("", "/json", "/ul")


def hash_password(clear: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$` line-part Mosquitto's password file holds for this password."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", clear.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(clear: str, hashed: str) -> bool:
    """Whether `clear` is the password behind a `$7$` hash (what Mosquitto checks at CONNECT)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", clear.encode("utf-8"), salt, int(parts[2])), digest)


def bad_username(name: str) -> str | None:
    """Why `name` cannot be an MQTT username in our files, None when it can."""
    if not name:
        return "it is empty"
    if _BAD_NAME.search(name):
        return "it holds ':', a blank, a control character or one of '+', '#', '/'"
    return None


def _bad_apikey(apikey: str) -> str | None:
    if bad_username(apikey):
        return f"its apikey {apikey!r} cannot be an MQTT topic level"
    if apikey in ("json", "ul"):  # `/json/+/attrs/+` would also grant `/json/<other apikey>/attrs/attrs`
        return f"its apikey {apikey!r} is a topic prefix of the agents: no ACL can keep it to its own topics"
    return None


@dataclass(slots=True)
class MqttUser:
    """One line of the password file and one `user` block of the ACL file."""

    username: str
    password_hash: str
    apikeys: list[str] = field(default_factory=list)


def users_of(groups: Iterable[dict[str, Any]]) -> tuple[list[MqttUser], list[str]]:
    """The MQTT users the groups define, and why some groups give none (notes for the operator).

    A group without `mqtt_password_hash` gives no user. Groups sharing an apikey (several tenants or
    resources) and setting no `mqtt_username` share one user; a username given two different passwords
    is refused (ValueError): which one the devices hold cannot be guessed.
    """
    users: dict[str, MqttUser] = {}
    notes: list[str] = []
    for g in groups:
        apikey, hashed = str(g.get("apikey", "")), g.get(HASH_FIELD)
        where = f"group apikey={apikey!r} of {g.get('service')!r}{g.get('subservice')!r}"
        if not hashed:
            notes.append(f"{where}: no mqtt_password, no MQTT user")
            continue
        name = str(g.get("mqtt_username") or apikey)
        why = bad_username(name) or _bad_apikey(apikey)
        if why:
            notes.append(f"{where}: skipped, {why}")
            continue
        user = users.get(name)
        if user is None:
            users[name] = MqttUser(name, str(hashed), [apikey])
        elif user.password_hash != hashed:
            raise ValueError(f"MQTT user {name!r} has two passwords ({where} and another group): "
                             "give the groups distinct mqtt_username, or one password")
        elif apikey not in user.apikeys:
            user.apikeys.append(apikey)
    return list(users.values()), notes


def password_file(users: list[MqttUser], agent: tuple[str, str] | None) -> str:
    """Mosquitto's password file: `username:hash` lines, the agent's (username, hash) first."""
    lines = [f"{agent[0]}:{agent[1]}"] if agent else []
    lines += [f"{u.username}:{u.password_hash}" for u in users if not agent or u.username != agent[0]]
    return "".join(line + "\n" for line in lines)


def acl_file(users: list[MqttUser], agent_username: str | None) -> str:
    """Mosquitto's ACL file: each group's user on its own apikey's topics, the agent's on all of them."""
    out = ["# written by `metropole agent mqtt-auth` from the agents' registry; Mosquitto reloads it on SIGHUP\n"]
    if agent_username:
        out.append(f"\nuser {agent_username}\n")
        out += [f"topic read {t}\n" for t in (*MEASURE_TOPICS, *COMMAND_RESULT_TOPICS)]
        out += [f"topic write {p}/+/+/cmd\n" for p in _PREFIXES]
    for u in users:
        if u.username == agent_username:
            continue
        out.append(f"\nuser {u.username}\n")
        for key in u.apikeys:
            out += [f"topic write {p}/{key}/+/{s}\n" for p in _PREFIXES for s in _MEASURE_SUFFIXES]
            out += [f"topic write {p}/{key}/+/cmdexe\n" for p in _PREFIXES]
            out += [f"topic read {p}/{key}/+/cmd\n" for p in _PREFIXES]
    return "".join(out)


def agent_line(username: str, clear: str | None, existing: Path) -> tuple[str, str] | None:
    """The agent's (username, hash): from its password when given, else its line in the file being replaced."""
    if clear:
        return username, hash_password(clear)
    if existing.exists():
        for line in existing.read_text(encoding="utf-8").splitlines():
            name, sep, hashed = line.partition(":")
            if sep and name == username:
                return username, hashed
    return None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` whole (Mosquitto never reads half a file), readable by its owner and group (Mosquitto's group)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
