"""The grammar the `type` and `scopeQ` parameters share: an OR of items or of parenthesised AND groups.

    Selection = Group *(("," / "|") Group)
    Group     = Item / "(" Item *(";" Item) ")"

Clauses 4.17 and 4.19 both say that an AND (";") needs parentheses; the two
parsers differ only in what an item is and in the words of their errors.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from broker import limits
from models.errors import InvalidQuery

T = TypeVar("T")


class OrOfAndsParser(Generic[T]):
    """A cursor over the parameter text; subclasses define `item()` and the error wording."""

    label = "selection"  # in "Invalid <label> at position ..."
    param = "q"  # in "(<param>=...)"
    end = "end of selection"  # what the end of the text is called in errors
    and_example = "(A;B)"
    item_start = ""  # what may begin an item, for the last error ("'/', " for scopes)
    bare_and = False  # whether "A;B" (no parentheses) is read as the conjunction "(A;B)"

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidQuery(f"{self.param} must be a string, got {type(text).__name__}")
        bound = limits.current().max_q_length
        if len(text) > bound:
            raise InvalidQuery(f"{self.param} is {len(text)} characters long; at most {bound} are allowed")
        self.text = text
        self.pos = 0

    def error(self, expected: str, pos: int | None = None) -> InvalidQuery:
        """InvalidQuery naming the position, what was expected and what was found."""
        at = self.pos if pos is None else pos
        found = repr(self.text[at]) if at < len(self.text) else self.end
        return InvalidQuery(f"Invalid {self.label} at position {at}: expected {expected}, found {found} "
                            f"({self.param}={self.text!r})")  # fmt: skip

    def eat(self, s: str) -> bool:
        """Consume `s` if the text continues with it."""
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def item(self) -> T:
        """One item (an entity type, a scope pattern); raise `self.error(...)` on bad input."""
        raise NotImplementedError

    def groups(self) -> tuple[tuple[T, ...], ...]:
        """The whole text as its OR of AND groups."""
        groups: list[tuple[T, ...]] = []
        while True:
            if self.eat("("):
                group = [self.item()]
                while self.eat(";"):
                    group.append(self.item())
                if not self.eat(")"):
                    raise self.error("';' or ')' closing the conjunction")
                groups.append(tuple(group))
            else:
                group = [self.item()]
                while self.bare_and and self.eat(";"):
                    group.append(self.item())
                groups.append(tuple(group))
            if self.pos >= len(self.text):
                return tuple(groups)
            if self.text[self.pos] in ",|":
                self.pos += 1
                continue
            if self.text[self.pos] == ";":
                raise self.error(f"',' or '|'; ';' (and) needs parentheses, e.g. {self.and_example}")
            raise self.error(f"{self.item_start}',', '|' or {self.end}")
