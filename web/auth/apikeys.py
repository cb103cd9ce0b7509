"""API keys: a file of key hashes and the grants of each key.

    # name           key                                                                     grants
    aix-portal       sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  aix:read aix:write
    metropole-ops    sha256:...                                                              *:admin

The file holds only SHA-256 hashes, so it is no secret itself (the keys are
random 256-bit strings: a hash is enough, no slow KDF needed).
`metropole auth apikey NAME GRANT...` prints a new key and its line.
Callers send the key as `X-API-Key: <key>` or `Authorization: ApiKey <key>`
(or as a Bearer token, for clients that only know those).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from web.auth.grants import Principal, parse_grant

PREFIX = "mtr_"  # recognisable in logs and secret scanners


def hash_key(key: str) -> str:
    """The `sha256:<hex>` form of a key, as the file stores it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return PREFIX + secrets.token_urlsafe(32)


def key_line(name: str, key: str, grants: list[str]) -> str:
    """The line of the API key file for `key`."""
    return f"{name}  {hash_key(key)}  {' '.join(grants)}"


class ApiKeys:
    """The keys of one file, looked up by hash."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._by_hash = principals

    @classmethod
    def parse(cls, text: str, *, source: str = "API key file") -> ApiKeys:
        """Read the file's text; ValueError names the line of any mistake."""
        found: dict[str, Principal] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3 or not parts[1].startswith("sha256:") or len(parts[1]) != 7 + 64:
                raise ValueError(f"{source}, line {number}: expected 'NAME sha256:<64 hex digits> GRANT...'")
            grants = []
            for text_grant in parts[2:]:
                grant = parse_grant(text_grant)
                if grant is None:
                    raise ValueError(f"{source}, line {number}: {text_grant!r} is not TENANT:read|write|admin")
                grants.append(grant)
            found[parts[1].lower()] = Principal(parts[0], "apikey", frozenset(grants))
        return cls(found)

    @classmethod
    def load(cls, path: str | Path) -> ApiKeys:
        """Read an API key file."""
        return cls.parse(Path(path).read_text(encoding="utf-8"), source=str(path))

    def add(self, key: str, principal: Principal) -> None:
        """Accept one more key (`metropole run` gives its in-process agents one, held in memory only)."""
        self._by_hash[hash_key(key)] = principal

    def __len__(self) -> int:
        return len(self._by_hash)

    def principal(self, key: str) -> Principal | None:
        """The principal of a presented key, None when the key is unknown."""
        return self._by_hash.get(hash_key(key))
