"""What the compose tests share: the stacks' files, YAML loading, variable interpolation.

`interpolate` follows the Compose specification's interpolation rules
(`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
`${VAR?error}`, `${VAR:+alt}`, `$$` for a literal `$`), so the static checks
can validate each file both as written and as `docker compose` would see it,
and list every variable a file reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE = PROJECT / "compose"
STACKS = {
    "fiware": COMPOSE / "fiware" / "docker-compose.yml",
    "embedded": COMPOSE / "embedded" / "docker-compose.yml",
}
COMPOSE_README = COMPOSE / "README.md"
#: The image the project's Dockerfile builds; the only one without a registry.
OWN_IMAGE = "metropole"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


@dataclass(frozen=True, slots=True)
class Reference:
    """One `${NAME...}` in a compose file."""

    name: str
    op: str  # "", "-", ":-", "?", ":?", "+", ":+"
    arg: str


def references(text: str) -> list[Reference]:
    """Every variable reference in `text`, in order (`$$` escapes excluded)."""
    found = []
    for m in _VARIABLE.finditer(text):
        if m.group("escaped"):
            continue
        if m.group("bare"):
            found.append(Reference(m.group("bare"), "", ""))
        else:
            found.append(Reference(m.group("name"), m.group("op") or "", m.group("arg") or ""))
    return found


class MissingVariable(ValueError):
    """A `${VAR:?error}` whose variable is unset (docker compose refuses to start)."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with every variable replaced as docker compose would."""

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("bare") or m.group("name")
        op, arg = m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        empty = value is None or (op.startswith(":") and value == "")
        if op in {"-", ":-"}:
            return arg if empty else str(value)
        if op in {"?", ":?"}:
            if empty:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in {"+", ":+"}:
            return "" if empty else arg
        return "" if value is None else value

    return _VARIABLE.sub(replace, text)


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def stack_text(stack: str) -> str:
    return STACKS[stack].read_text(encoding="utf-8")


def stack(stack_name: str) -> dict[str, Any]:
    """The compose file as written (before interpolation)."""
    return load_yaml(stack_text(stack_name))


def services(stack_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from stack(stack_name)["services"].items()


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, map or list form, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(params=sorted(STACKS))
def stack_name(request: pytest.FixtureRequest) -> str:
    """Each stack in turn."""
    return str(request.param)
