"""The NGSI-LD Attribute Projection Language, `pick` / `omit` / `attrs` (ETSI GS CIM 009 V1.9.1, clause 4.21).

    ProjectionTerm   = AttrName *1(LinkedEntityTerm) *(orOp ProjectionTerm)   ; orOp is "|" or ","
    LinkedEntityTerm = "{" ProjectionTerm "}"

`observation{temperature,humidity}` projects the Linked Entity that the
Relationship `observation` points to (Linked Entity Retrieval, clause 4.5.23),
which ENF carries inline in the Relationship instance's `entity` member
(`entityList` for a ListRelationship). The names `id`, `type` and `scope` are
Entity members, selectable as such and never expanded (clause 6.4.3.2, pick:
"Each String is an Entity member ("id", "type", "scope" or a projected
Attribute name)").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker import limits
from models.errors import InvalidQuery
from models.validation import is_name

__all__ = ["Projection", "ProjectionTerm", "apply_omit", "apply_pick", "parse_attrs", "parse_projection"]

_NAME = re.compile(r"[^\W\d_]\w*")
ENTITY_MEMBERS = frozenset({"id", "type", "scope"})
"""Entity members the projection names directly."""


@dataclass(frozen=True)
class ProjectionTerm:
    """An attribute (or entity member) name, with the projection of its linked entities if any."""

    name: str
    linked: tuple[ProjectionTerm, ...] | None = None

    def text(self) -> str:
        inner = "{" + ",".join(t.text() for t in self.linked) + "}" if self.linked is not None else ""
        return self.name + inner


@dataclass(frozen=True)
class Projection:
    """A parsed projection: the list of terms at the top level."""

    text: str
    terms: tuple[ProjectionTerm, ...]

    def attribute_terms(self) -> frozenset[str]:
        """Every attribute term at any depth (entity members excluded), for the caller to expand."""
        out: set[str] = set()
        stack = list(self.terms)
        while stack:
            term = stack.pop()
            if term.name not in ENTITY_MEMBERS:
                out.add(term.name)
            stack.extend(term.linked or ())
        return frozenset(out)

    def names(self) -> tuple[str, ...]:
        """The top-level names in order (what `attrs` needs)."""
        return tuple(t.name for t in self.terms)

    def pick(self, entity: Mapping[str, Any], expand: Callable[[str], str]) -> dict[str, Any]:
        """The entity reduced to the listed members (see `apply_pick`)."""
        return apply_pick(entity, self.terms, expand)

    def omit(self, entity: Mapping[str, Any], expand: Callable[[str], str]) -> dict[str, Any]:
        """The entity without the listed members (see `apply_omit`)."""
        return apply_omit(entity, self.terms, expand)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, expected: str) -> InvalidQuery:
        found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of projection"
        return InvalidQuery(f"Invalid projection at position {self.pos}: expected {expected}, found {found} "
                            f"({self.text!r})")  # fmt: skip

    def terms(self, depth: int) -> tuple[ProjectionTerm, ...]:
        if depth > limits.current().max_q_depth:
            raise self.error(f"at most {limits.current().max_q_depth} nested '{{'")
        out: list[ProjectionTerm] = []
        while True:
            m = _NAME.match(self.text, self.pos)
            if m is None:
                raise self.error("an attribute name (letter, then letters, digits or '_')")
            self.pos = m.end()
            linked = None
            if self.text.startswith("{", self.pos):
                self.pos += 1
                linked = self.terms(depth + 1)
                if not self.text.startswith("}", self.pos):
                    raise self.error("',', '|' or '}'")
                self.pos += 1
            out.append(ProjectionTerm(m.group(), linked))
            if self.pos < len(self.text) and self.text[self.pos] in ",|":
                self.pos += 1
                continue
            if self.pos >= len(self.text) or (depth and self.text[self.pos] == "}"):
                return tuple(out)
            raise self.error("',', '|', '{'" + (" or '}'" if depth else " or end of projection"))


def parse_projection(text: str) -> Projection:
    """Parse a pick/omit value (URL-decoded); raise InvalidQuery with the position."""
    return Projection(text, _Parser(text).terms(0))


def parse_attrs(text: str) -> tuple[str, ...]:
    """Parse the deprecated `attrs` parameter: a comma-separated list of attribute names.

    Unlike pick/omit, each item is an Attribute name as clause 6.4.3.2 defines
    it, so a fully qualified IRI is as good as a term; the entity members
    `id`, `type` and `scope` are not attributes and are refused (6.5.3.1).
    """
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if not name:
            raise InvalidQuery(f"Invalid attrs {text!r}: an attribute name is empty")
        if name in ENTITY_MEMBERS:
            raise InvalidQuery(f"Invalid attrs {text!r}: {name!r} is an entity member, not an attribute")
        if not is_name(name):
            raise InvalidQuery(f"Invalid attrs {text!r}: {name!r} is not an attribute name or IRI")
    return names


def _key(name: str, expand: Callable[[str], str]) -> str:
    return name if name in ENTITY_MEMBERS else expand(name)


def _project_linked(instances: Any, terms: tuple[ProjectionTerm, ...], expand: Callable[[str], str],
                    keep: bool) -> Any:  # fmt: skip
    """Apply the nested projection to the linked entities held inline by a Relationship's instances."""
    if not isinstance(instances, list):
        return instances
    out = []
    for inst in instances:
        if isinstance(inst, dict) and ("entity" in inst or "entityList" in inst):
            inst = dict(inst)
            project = apply_pick if keep else apply_omit
            if isinstance(inst.get("entity"), dict):
                inst["entity"] = project(inst["entity"], terms, expand)
            if isinstance(inst.get("entityList"), list):
                inst["entityList"] = [project(e, terms, expand) if isinstance(e, dict) else e
                                      for e in inst["entityList"]]  # fmt: skip
        out.append(inst)
    return out


def apply_pick(entity: Mapping[str, Any], terms: tuple[ProjectionTerm, ...], expand: Callable[[str], str]) -> dict[str, Any]:
    """A copy of the ENF entity holding only the listed members ("@context" is kept if present)."""
    out: dict[str, Any] = {k: entity[k] for k in ("@context",) if k in entity}
    for term in terms:
        key = _key(term.name, expand)
        if key in entity:
            value = entity[key]
            out[key] = _project_linked(value, term.linked, expand, True) if term.linked is not None else value
    return out


def apply_omit(entity: Mapping[str, Any], terms: tuple[ProjectionTerm, ...], expand: Callable[[str], str]) -> dict[str, Any]:
    """A copy of the ENF entity without the listed members.

    A term with a linked projection (`rel{a}`) keeps `rel` and omits `a` from its linked entities.
    """
    out = dict(entity)
    for term in terms:
        key = _key(term.name, expand)
        if key not in out:
            continue
        if term.linked is None:
            del out[key]
        else:
            out[key] = _project_linked(out[key], term.linked, expand, False)
    return out
