"""The NGSI-LD Scope Query Language, the `scopeQ` parameter (ETSI GS CIM 009 V1.9.1, clauses 4.18, 4.19).

    ScopesQ  = OrScopeQ *(orOp OrScopeQ) / "/#"         ; orOp is "|" or ","
    OrScopeQ = "(" ScopeQ *(";" ScopeQ) ")" / ScopeQ ["/#"]
    ScopeQ   = "/" ScopeQLevel *("/" ScopeQLevel)      ; a level is a name or "+"

`+` matches exactly one level; a trailing `/#` matches the scope itself and
every scope below it; `/#` alone matches any entity that has a scope. Like the
type selection, the grammar is a disjunction of conjunctions, and a
conjunction needs parentheses.

Three leniencies: the leading `/` may be missing (clause 4.19 example 5
writes `|CompanyB`; a Scope, clause 4.18, is `[/] ScopeLevel ...`), and
entity scopes are compared without it; `/#` (and a `/#` suffix) is also
accepted inside parentheses; and `/A;/B` without parentheses is the
conjunction `(/A;/B)`, `;` binding tighter than `,` and `|` as in the query
language whose operators clause 4.19 says scopeQ shares (clause 4.9) -- the
reading the ETSI suite (019_01_06 QueryWithAndScope) expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from broker.query.selection import OrOfAndsParser

__all__ = ["ScopePattern", "ScopeQuery", "compile_scope_query", "parse_scope_query"]

_LEVEL = re.compile(r"[^\W\d_]\w*|\+")


@dataclass(frozen=True)
class ScopePattern:
    """One scope pattern: levels (names or "+"), and whether a `#` wildcard ends it."""

    levels: tuple[str, ...]
    subtree: bool = False

    def matches_scope(self, scope: str) -> bool:
        """Whether one entity scope (`/a/b` or `a/b`) is matched."""
        parts = scope.strip("/").split("/") if scope.strip("/") else []
        if not parts:
            return False
        n = len(self.levels)
        if len(parts) < n or (len(parts) > n and not self.subtree):
            return False
        return all(want == "+" or want == got for want, got in zip(self.levels, parts))

    def text(self) -> str:
        return "/" + "/".join(self.levels) + ("/#" if self.subtree and self.levels else "#" if self.subtree else "")


@dataclass(frozen=True)
class ScopeQuery:
    """An OR of AND-groups of scope patterns."""

    text: str
    groups: tuple[tuple[ScopePattern, ...], ...]

    def matches(self, scopes: Iterable[str] | str | None) -> bool:
        """Whether an entity with these scopes is selected (each pattern of a group by some scope)."""
        if scopes is None:
            return False
        have = [scopes] if isinstance(scopes, str) else list(scopes)
        return any(all(any(p.matches_scope(s) for s in have) for p in group) for group in self.groups)


class _Parser(OrOfAndsParser[ScopePattern]):
    label = "scopeQ"
    param = "scopeQ"
    end = "end of scopeQ"
    and_example = "(/A;/B)"
    item_start = "'/', "
    bare_and = True  # see the module docstring

    def item(self) -> ScopePattern:
        self.eat("/")  # optional, see the module docstring
        if self.eat("#"):
            return ScopePattern((), True)
        levels: list[str] = []
        while True:
            m = _LEVEL.match(self.text, self.pos)
            if m is None:
                raise self.error("a scope level (a name, or '+')" if levels or self.pos else "a scope such as /Madrid")
            levels.append(m.group())
            self.pos = m.end()
            if not self.eat("/"):
                return ScopePattern(tuple(levels))
            if self.eat("#"):
                return ScopePattern(tuple(levels), True)


def parse_scope_query(text: str) -> tuple[tuple[ScopePattern, ...], ...]:
    """Parse a scopeQ into its OR of AND-groups; raise InvalidQuery with the position."""
    return _Parser(text).groups()


def compile_scope_query(text: str) -> ScopeQuery:
    """Parse the `scopeQ` parameter (URL-decoded) into a ScopeQuery."""
    return ScopeQuery(text, parse_scope_query(text))
