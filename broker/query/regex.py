"""Clients' regular expressions (idPattern, q `~=`, QuantumLeap's idPattern) on a linear-time engine.

Python's `re` backtracks: `^urn:ngsi-ld:Redos30:(a+)+$` against a 30-character
id took 38 s and doubled with every character, holding the whole broker
(issue 17). RE2 (google-re2) runs in time linear in the text whatever the
pattern, so a client's pattern is compiled by RE2 only, never by `re`. What
RE2 cannot run in linear time it refuses: backreferences, lookaround,
possessive quantifiers, repetition counts over 1000; such a pattern is a
BadRequestData, as is one longer than METROPOLE_BROKER_MAX_PATTERN_LENGTH
or one whose automaton would take more than 8 MiB.

The same check guards the PostgreSQL store, which evaluates idPattern with
its own `~` operator: only patterns RE2 accepts (no backreferences, which
are what make PostgreSQL's engine exponential) reach it.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import re2

from broker import limits
from models.errors import InvalidQuery

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a client's bad pattern is its 400, not a line on our stderr
_OPTIONS_CI = re2.Options()
_OPTIONS_CI.log_errors = False
_OPTIONS_CI.case_sensitive = False


class CompiledPattern(Protocol):
    """What callers use of a compiled pattern (RE2's object has `re`'s search)."""

    def search(self, text: str, *args: Any) -> Any: ...


@functools.lru_cache(maxsize=512)
def _compile(pattern: str, ignore_case: bool) -> CompiledPattern:
    compiled: CompiledPattern = re2.compile(pattern, options=_OPTIONS_CI if ignore_case else _OPTIONS)  # re2: no stubs
    return compiled


def compile_pattern(pattern: str, what: str = "regular expression", *, ignore_case: bool = False) -> CompiledPattern:
    """`pattern` compiled by RE2 (cached), or InvalidQuery saying why it cannot be run."""
    if not isinstance(pattern, str):
        raise InvalidQuery(f"{what} must be a string")
    bound = limits.current().max_pattern_length
    if len(pattern) > bound:
        raise InvalidQuery(f"{what} is {len(pattern)} characters long; at most {bound} are allowed")
    try:
        return _compile(pattern, ignore_case)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidQuery(f"invalid regular expression {pattern!r} in {what}: {reason} (RE2 syntax, run in "
                           "linear time: no backreferences or lookaround)") from None


_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_/@=,;~!'&%<>#\"")
_ESCAPED = frozenset(".-:/_#")


def literal_prefix(pattern: str) -> str:
    """The text every match of `pattern` starts with, when it is anchored (`^urn:ngsi-ld:Car:` -> `urn:ngsi-ld:Car:`).

    "" when there is none or it cannot be told simply (no `^`, an alternation anywhere). A store may use
    it as an index-friendly prefilter before running the pattern itself (the PostgreSQL store does: its
    own `~` speaks another dialect than RE2's).
    """
    if not pattern.startswith("^") or "|" in pattern:
        return ""
    out: list[str] = []
    i = 1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _ESCAPED:
            out.append(pattern[i + 1])
            i += 2
            continue
        if c not in _LITERAL:
            break
        out.append(c)
        i += 1
    if i < len(pattern) and pattern[i] in "*?{" and out:
        out.pop()  # `ab*`: the b may be absent
    return "".join(out)


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` (already checked) is found in `text`; what the SQLite store's REGEXP calls."""
    return compile_pattern(pattern).search(text) is not None
