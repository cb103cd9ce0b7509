"""The NGSI-LD Entity Type Selection Language, the `type` parameter (ETSI GS CIM 009 V1.9.1, clause 4.17).

    EntityTypes  = OrEntityType *(orOp OrEntityType)          ; orOp is "|" or ","
    OrEntityType = "(" EntityType *(";" EntityType) ")" / EntityType

The grammar is already in disjunctive normal form: a selection is an OR of
conjunctions, and a conjunction needs parentheses ("For logical and grouping
parenthesis are needed"), so `A;B` without them is a syntax error and
parentheses do not nest. EntityType is a name (clause 4.6.2, optionally
`prefix:name`) or a URI; it runs up to the next `,` `|` `;` `(` `)`, which the
spec's NOTE acknowledges cannot then appear inside a URI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from broker.query.selection import OrOfAndsParser

__all__ = ["TypeSelection", "compile_type_selection", "parse_type_selection"]

_NAME = re.compile(r"[^\W\d_]\w*(?::[^\W\d_]\w*)?")  # clause 4.6.2 name, or prefix:name
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s,|;()]+")
_TOKEN = re.compile(r"[^\s,|;()]+")


@dataclass(frozen=True)
class TypeSelection:
    """An OR of AND-groups of entity type terms, as the client wrote them."""

    text: str
    groups: tuple[tuple[str, ...], ...]

    def terms(self) -> frozenset[str]:
        """Every type term, for the caller to expand with its @context."""
        return frozenset(t for group in self.groups for t in group)

    def dnf(self, expand: Callable[[str], str]) -> list[frozenset[str]]:
        """Disjunctive normal form of expanded types: the entity matches if it has all types of some set."""
        out: list[frozenset[str]] = []
        for group in self.groups:
            conj = frozenset(expand(t) for t in group)
            if conj not in out:
                out.append(conj)
        return out

    def matches(self, entity_types: Iterable[str], expand: Callable[[str], str]) -> bool:
        """Whether an entity with these expanded types is selected."""
        have = set(entity_types)
        return any(conj <= have for conj in self.dnf(expand))

    def compile(self, expand: Callable[[str], str]) -> Callable[[Iterable[str]], bool]:
        """A fast check of an entity's expanded type list, expanding each term once."""
        conjunctions = self.dnf(expand)
        singles = frozenset(next(iter(c)) for c in conjunctions if len(c) == 1)
        multiples = [c for c in conjunctions if len(c) > 1]

        def matches(entity_types: Iterable[str]) -> bool:
            have = entity_types if isinstance(entity_types, (set, frozenset)) else set(entity_types)
            return not singles.isdisjoint(have) or any(c <= have for c in multiples)

        return matches


class _Parser(OrOfAndsParser[str]):
    label = "type selection"
    param = "type"
    end = "end of selection"
    and_example = "(A;B)"

    def item(self) -> str:
        start = self.pos
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            raise self.error("an entity type (name or URI)")
        token = m.group()
        if _NAME.fullmatch(token) is None and _URI.fullmatch(token) is None:
            raise self.error("an entity type: a name (letter, then letters, digits or '_') or a URI", start)
        self.pos = m.end()
        return token


def parse_type_selection(text: str) -> tuple[tuple[str, ...], ...]:
    """Parse a type selection into its OR of AND-groups; raise InvalidQuery with the position."""
    return _Parser(text).groups()


def compile_type_selection(text: str) -> TypeSelection:
    """Parse the `type` parameter (URL-decoded) into a TypeSelection."""
    return TypeSelection(text, parse_type_selection(text))
