"""The NGSI-LD Query Language, the `q` parameter (ETSI GS CIM 009 V1.9.1, clause 4.9).

    text --parse_q--> AST (frozen dataclasses) --Query.compile(expand)--> Callable[[ENF entity], bool]

Grammar accepted (the spec's ABNF, plus the extensions marked *):

    Query      = Or
    Or         = And *("|" And)                 ; ";" binds tighter than "|" (clause 4.9)
    And        = Term *(";" Term)
    Term       = "(" Or ")" / "!" Attribute*    ; parentheses may nest*, "!attr" = non-existence*
               / Attribute [Operator Value]
    Attribute  = AttrName "{" Linked "}" / ValuePath
    Linked     = [EntityType *("," EntityType) ":"] (AttrName "{" Linked "}" / ValuePath)
    ValuePath  = AttrName *("." AttrName) ["[" Trail "]"]
    Trail      = "*" / Segment *("." Segment)   ; Segment also allows "-" and "$" (language tags)*

Attribute names stay client terms in the AST (`Query.attribute_terms()`); the
broker expands them with the request's @context through the `expand` callable
given to `Query.compile`, which memoises every expansion once per compiled
predicate. The value literals and the operator semantics (`compile_test`) are in
q_values.py; here the AST, the parser, the printer and the compiler.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from broker import limits
from broker.query.regex import compile_pattern
from models.errors import InvalidQuery, OperationNotSupported

__all__ = [
    "And", "Boolean", "Comparison", "Exists", "LinkedPath", "Node", "NotExists", "Number", "Or", "Pattern",
    "Query", "Range", "String", "Temporal", "Uri", "ValueList", "ValuePath", "compile_q", "parse_q", "to_text",
]  # fmt: skip

# Core members addressable after the attribute name (`temperature.observedAt`); they are
# protected core-context terms, kept short in ENF, so they are never expanded.
SPECIAL_MEMBERS = frozenset(
    {"observedAt", "createdAt", "modifiedAt", "deletedAt", "unitCode", "datasetId", "objectType", "expiresAt"}
)

from broker.query.q_values import (  # re-exported, see __all__
    _REL,
    _VALUE,
    _VOCAB,
    Boolean,
    Number,
    Operator,
    Range,
    Scalar,
    String,
    Target,
    Temporal,
    Test,
    Uri,
    Value,
    ValueList,
    compile_test,
    parse_temporal,
)

# ----------------------------------------------------------------------------- values
# Literals and operator semantics live in q_values.py (this module would pass 800 lines).

@dataclass(frozen=True)
class ValuePath:
    """`attr.sub.sub[member.member]`: sub-attribute names, then an optional trail into the value."""

    names: tuple[str, ...]
    trail: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkedPath:
    """`rel{Type1,Type2:inner}`: follow Relationship `rel` to entities (optionally of those types)."""

    relationship: str
    target_types: tuple[str, ...]
    inner: Path


Path: TypeAlias = ValuePath | LinkedPath


@dataclass(frozen=True)
class Exists:
    """A bare attribute path: the target element exists."""

    path: Path


@dataclass(frozen=True)
class NotExists:
    """`!path` (extension, as Orion-LD and Scorpio accept it): the target element does not exist."""

    path: Path


@dataclass(frozen=True)
class Comparison:
    """`path <op> value`; ranges and value lists only come with `==` and `!=`."""

    path: Path
    op: Operator
    value: Value


@dataclass(frozen=True)
class Pattern:
    """`path ~= regex` (or `!~=` when `negated`); the regex is searched, not anchored."""

    path: Path
    regex: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    """`a;b;...`: every term matches."""

    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """`a|b|...`: some term matches."""

    terms: tuple[Node, ...]


Node: TypeAlias = Exists | NotExists | Comparison | Pattern | And | Or
Predicate: TypeAlias = Callable[[Mapping[str, Any]], bool]
Resolver: TypeAlias = Callable[[str], Mapping[str, Any] | None]

# ----------------------------------------------------------------------------- parser

_NAME = re.compile(r"[^\W\d_]\w*")
_SEGMENT = re.compile(r"\*|[\w$][\w$-]*")
_OPERATORS: tuple[Literal["!~=", "~="] | Operator, ...] = ("!~=", "==", "!=", "~=", ">=", "<=", ">", "<")  # longest first
_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_TEMPORALS: tuple[tuple[re.Pattern[str], Literal["dateTime", "date", "time"]], ...] = (
    (_DATETIME, "dateTime"), (_DATE, "date"), (_TIME, "time"))
_URI = re.compile(r"[^\W\d_][^;|),\s]*")  # scheme-led URI or a bare term (expandValues, VocabProperty)
_END_OF_VALUE = ";|),"


class _Parser:
    """Recursive descent over the URL-decoded q string; positions in errors are 0-based offsets."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidQuery(f"q must be a string, got {type(text).__name__}")
        bound = limits.current()
        if len(text) > bound.max_q_length:
            raise InvalidQuery(f"q is {len(text)} characters long; at most {bound.max_q_length} are allowed")
        if "\x00" in text:
            raise InvalidQuery("q holds a NUL character (U+0000)")
        self.text = text
        self.pos = 0
        self.depth = 0
        self.max_depth = bound.max_q_depth

    # -- helpers
    def error(self, expected: str, pos: int | None = None) -> InvalidQuery:
        at = self.pos if pos is None else pos
        found = repr(self.text[at]) if at < len(self.text) else "end of query"
        return InvalidQuery(f"Invalid q at position {at}: expected {expected}, found {found} (q={self.text!r})")

    def skip_ws(self) -> None:
        # The grammar has no whitespace; tolerating it between tokens costs nothing and
        # forgives clients that write `speed > 50`.
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def eat(self, s: str) -> bool:
        if self.text.startswith(s, self.pos):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.eat(s):
            raise self.error(what or repr(s))

    def match(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def name(self, what: str = "an attribute name") -> str:
        found = self.match(_NAME)
        if found is None:
            raise self.error(what)
        return found

    # -- grammar
    def query(self) -> Node:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.error("a query term")
        node = self.disjunction()
        if self.pos < len(self.text):
            raise self.error("';', '|' or end of query" + (" (unbalanced ')')" if self.peek(")") else ""))
        return node

    def disjunction(self) -> Node:
        terms = [self.conjunction()]
        while self.eat("|"):
            self.skip_ws()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def conjunction(self) -> Node:
        terms = [self.term()]
        while self.eat(";"):
            self.skip_ws()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def term(self) -> Node:
        self.skip_ws()
        if self.eat("("):
            self.depth += 1
            if self.depth > self.max_depth:
                raise InvalidQuery(f"Invalid q at position {self.pos - 1}: more than {self.max_depth} nested "
                                   "parentheses")
            self.skip_ws()
            node = self.disjunction()
            self.skip_ws()
            self.expect(")", "')' closing the '(' of a term association")
            self.skip_ws()
            self.depth -= 1
            return node
        if self.eat("!"):
            negation = NotExists(self.attribute())
            self.skip_ws()
            return negation
        path = self.attribute()
        self.skip_ws()
        op = next((o for o in _OPERATORS if self.peek(o)), None)
        if op is None:
            return Exists(path)
        self.pos += len(op)
        self.skip_ws()
        if op == "~=" or op == "!~=":
            result: Node = Pattern(path, self.regex(), op == "!~=")
        elif op in ("==", "!="):
            result = Comparison(path, op, self.equality_value())
        else:
            start = self.pos
            value = self.value()
            if not isinstance(value, (Number, String, Temporal)):
                raise self.error(f"a number, quoted string, date or time after {op!r}", start)
            result = Comparison(path, op, value)
        self.skip_ws()
        return result

    def attribute(self) -> Path:
        first = self.name()
        if self.eat("{"):
            path: Path = self.linked(first)
            return path
        return self.value_path(first)

    def linked(self, relationship: str) -> LinkedPath:
        start = self.pos
        head = self.name("an attribute name or entity type")
        types: list[str] = []
        if self.peek(",") or self.peek(":"):
            types.append(head)
            while self.eat(","):
                types.append(self.name("an entity type"))
            self.expect(":", "':' after the entity types of a linked entity path")
            head = self.name()
        inner: Path = self.linked(head) if self.eat("{") else self.value_path(head)
        self.expect("}", "'}' closing the linked entity path opened before position " + str(start))
        return LinkedPath(relationship, tuple(types), inner)

    def value_path(self, first: str) -> ValuePath:
        names = [first]
        while self.peek(".") and not self.peek(".."):
            self.pos += 1
            if names[-1] in SPECIAL_MEMBERS and len(names) > 1:
                raise self.error(f"nothing after the core member {names[-1]!r}", self.pos - 1)
            names.append(self.name("an attribute name after '.'"))
        trail: list[str] = []
        if self.eat("["):
            if len(names) > 1 and names[-1] in SPECIAL_MEMBERS:
                raise self.error(f"no '[...]' after the core member {names[-1]!r}", self.pos - 1)
            while True:
                segment = self.match(_SEGMENT)
                if segment is None:
                    raise self.error("a member name inside '[...]'")
                trail.append(segment)
                if not self.eat("."):
                    break
            if "*" in trail and len(trail) > 1:
                raise self.error("'*' alone inside '[...]' (any language)", self.pos - 1)
            self.expect("]", "'.' or ']' closing the trailing path")
        return ValuePath(tuple(names), tuple(trail))

    def equality_value(self) -> Value:
        start = self.pos
        first = self.value()
        if self.eat(".."):
            high = self.value()
            bounds = (Number, String, Temporal)
            if not isinstance(first, bounds) or not isinstance(high, bounds) or type(first) is not type(high):
                raise self.error("a range of two numbers, strings, dates or times of the same type", start)
            if isinstance(first, Temporal) and isinstance(high, Temporal) and first.kind != high.kind:
                raise self.error("range bounds of the same temporal type", start)
            return Range(first, high)
        if not self.peek(","):
            return first
        items: list[Scalar] = [first]
        while self.eat(","):
            self.skip_ws()
            items.append(self.value())
        return ValueList(tuple(items))

    def value(self) -> Scalar:
        start = self.pos
        text = self.text
        if self.peek('"'):
            token = self.match(_JSON_STRING)
            if token is None:
                raise self.error("a JSON string closed by '\"'", start)
            return String(json.loads(token))
        for pattern, kind in _TEMPORALS:
            m = pattern.match(text, start)
            if m and self._boundary(m.end()):
                if parse_temporal(kind, m.group()) is None:
                    raise self.error(f"a valid {kind}", start)
                self.pos = m.end()
                return Temporal(kind, m.group())
        m = _NUMBER.match(text, start)
        if m and self._boundary(m.end()):
            self.pos = m.end()
            return Number(json.loads(m.group()))
        for word, flag in (("true", True), ("false", False)):
            if text.startswith(word, start) and self._boundary(start + len(word)):
                self.pos = start + len(word)
                return Boolean(flag)
        token = self.match(_URI)
        if token is None:
            raise self.error("a value (number, quoted string, true/false, date, time or URI)", start)
        return Uri(token)

    def _boundary(self, end: int) -> bool:
        text = self.text
        return end >= len(text) or text[end] in _END_OF_VALUE or text[end] in " \t" or text.startswith("..", end)

    def regex(self) -> str:
        start = self.pos
        if self.peek('"'):
            token = self.match(_JSON_STRING)
            if token is None:
                raise self.error("a JSON string closed by '\"'", start)
            pattern: str = json.loads(token)
        else:
            # An unquoted regex runs to the next ';' or '|' outside brackets, or to an unmatched
            # ')': a client needing a top-level '|' quotes the regex as a JSON string.
            depth, i, text = 0, start, self.text
            while i < len(text):
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c in "([":
                    depth += 1
                elif c in ")]":
                    if depth == 0:
                        break
                    depth -= 1
                elif c in ";|" and depth == 0:
                    break
                i += 1
            pattern, self.pos = text[start:i], min(i, len(text))
        if not pattern:
            raise self.error("a regular expression", start)
        try:
            compile_pattern(pattern, "q")
        except InvalidQuery as exc:
            raise InvalidQuery(f"Invalid q at position {start}: {exc.detail}") from None
        return pattern


def parse_q(text: str) -> Node:
    """Parse an (already URL-decoded) q string into its AST; raise InvalidQuery with the position."""
    return _Parser(text).query()


# ----------------------------------------------------------------------------- printer


def _path_text(path: Path) -> str:
    if isinstance(path, LinkedPath):
        types = ",".join(path.target_types) + ":" if path.target_types else ""
        return f"{path.relationship}{{{types}{_path_text(path.inner)}}}"
    return ".".join(path.names) + (f"[{'.'.join(path.trail)}]" if path.trail else "")


def to_text(node: Node) -> str:
    """Print an AST back as q text that parses to an equal AST."""
    if isinstance(node, Exists):
        return _path_text(node.path)
    if isinstance(node, NotExists):
        return "!" + _path_text(node.path)
    if isinstance(node, Comparison):
        return f"{_path_text(node.path)}{node.op}{node.value.text()}"
    if isinstance(node, Pattern):
        return f"{_path_text(node.path)}{'!~=' if node.negated else '~='}{json.dumps(node.regex, ensure_ascii=False)}"
    joiner = ";" if isinstance(node, And) else "|"
    # Nested And/Or are parenthesised so the printed text keeps the parsed grouping.
    parts = [f"({to_text(t)})" if isinstance(t, (And, Or)) else to_text(t) for t in node.terms]
    return joiner.join(parts)


# ----------------------------------------------------------------------------- evaluation

def _flatten_language_map(lm: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(lm, dict):
        for v in lm.values():
            out.extend(v) if isinstance(v, list) else out.append(v)
    return out


def _walk(value: Any, trail: tuple[str, ...]) -> Any:
    # ECMA-262 member access in dot notation: anything but an object yields undefined (None).
    for segment in trail:
        if not isinstance(value, dict) or segment not in value:
            return None
        value = value[segment]
    return value


def _extract(inst: Any, trail: tuple[str, ...], out: list[Target]) -> None:
    """Append the target value(s) of one attribute instance, per clause 4.9, to `out`."""
    if not isinstance(inst, dict):
        return
    kind = inst.get("type")
    if kind == "Relationship":
        if not trail and inst.get("object") is not None:
            out.append((_REL, inst["object"]))
    elif kind == "ListRelationship":
        objects = inst.get("objectList")
        if not trail and isinstance(objects, list):
            out.append((_REL, [o.get("object") if isinstance(o, dict) else o for o in objects]))
    elif kind == "LanguageProperty":
        lm = inst.get("languageMap")
        if not trail or trail == ("*",):
            out.append((_VALUE, _flatten_language_map(lm)))
        elif len(trail) == 1 and isinstance(lm, dict) and trail[0] in lm:
            out.append((_VALUE, lm[trail[0]]))
    elif kind == "VocabProperty":
        if not trail and inst.get("vocab") is not None:
            out.append((_VOCAB, inst["vocab"]))
    elif kind == "ListProperty":
        if not trail and isinstance(inst.get("valueList"), list):
            out.append((_VALUE, inst["valueList"]))
    else:
        value = inst.get("json") if kind == "JsonProperty" else inst.get("value")
        if isinstance(value, dict) and "@value" in value:  # typed literal {"@type": "DateTime", "@value": ...}
            value = value["@value"]
        if trail:
            value = _walk(value, trail)
        if value is not None:
            out.append((_VALUE, value))


class _Compiler:
    """Turns an AST into nested closures, expanding each term once."""

    def __init__(self, expand: Callable[[str], str], resolve: Resolver | None, expand_values: Collection[str]) -> None:
        self._expand = expand
        self._cache: dict[str, str] = {}
        self.resolve = resolve
        self.expand_values = frozenset(expand_values)

    def expand(self, term: str) -> str:
        iri = self._cache.get(term)
        if iri is None:
            iri = self._cache[term] = self._expand(term)
        return iri

    def targets(self, path: Path) -> Callable[[Mapping[str, Any]], list[Target]]:
        if isinstance(path, LinkedPath):
            return self.linked_targets(path)
        iri = self.expand(path.names[0])
        steps = tuple((n in SPECIAL_MEMBERS, n if n in SPECIAL_MEMBERS else self.expand(n)) for n in path.names[1:])
        trail = path.trail

        def targets(entity: Mapping[str, Any]) -> list[Target]:
            instances = entity.get(iri)
            if not instances:
                return []
            if isinstance(instances, dict):
                instances = [instances]
            out: list[Target] = []
            for inst in instances:
                for is_member, key in steps:
                    if not isinstance(inst, dict):
                        break
                    if is_member:
                        if inst.get(key) is not None:
                            out.append((_VALUE, inst[key]))
                        inst = None
                        break
                    inst = inst.get(key)
                    if isinstance(inst, list):  # sub-attributes are single instances in ENF; be lenient
                        inst = inst[0] if inst else None
                else:
                    _extract(inst, trail, out)
            return out

        return targets

    def linked_targets(self, path: LinkedPath) -> Callable[[Mapping[str, Any]], list[Target]]:
        resolve = self.resolve
        if resolve is None:
            raise OperationNotSupported("q with a linked entity path (rel{attr}) needs entity resolution")
        iri = self.expand(path.relationship)
        types = frozenset(self.expand(t) for t in path.target_types)
        inner = self.targets(path.inner)

        def targets(entity: Mapping[str, Any]) -> list[Target]:
            out: list[Target] = []
            for inst in entity.get(iri) or ():
                found: list[Target] = []
                _extract(inst, (), found)
                for kind, objects in found:
                    if kind != _REL:
                        continue
                    for object_id in objects if isinstance(objects, list) else [objects]:
                        linked = resolve(object_id) if isinstance(object_id, str) else None
                        if linked is None or (types and types.isdisjoint(linked.get("type") or ())):
                            continue
                        out.extend(inner(linked))
            return out

        return targets

    def node(self, node: Node) -> Predicate:
        if isinstance(node, (And, Or)):
            preds = tuple(self.node(t) for t in node.terms)
            if len(preds) == 2:  # the common case, without a generator per entity
                p0, p1 = preds
                if isinstance(node, And):
                    return lambda e: p0(e) and p1(e)
                return lambda e: p0(e) or p1(e)
            if isinstance(node, And):
                return lambda e: all(p(e) for p in preds)
            return lambda e: any(p(e) for p in preds)
        targets = self.targets(node.path)
        if isinstance(node, Exists):
            return lambda e: bool(targets(e))
        if isinstance(node, NotExists):
            return lambda e: not targets(e)
        if isinstance(node, Pattern):
            test = compile_test("~=", node.regex, node.negated, self.expand, False)
        else:
            root = node.path
            while isinstance(root, LinkedPath):
                root = root.inner
            test = compile_test(node.op, node.value, False, self.expand, root.names[0] in self.expand_values)

        path = node.path
        if isinstance(path, ValuePath) and len(path.names) == 1 and not path.trail:
            return self.fast(self.expand(path.names[0]), test)

        def predicate(entity: Mapping[str, Any]) -> bool:
            for kind, value in targets(entity):
                if test(kind, value):
                    return True
            return False

        return predicate

    @staticmethod
    def fast(iri: str, test: Test) -> Predicate:
        """A top-level attribute compared directly: plain Property instances skip the target list."""

        def predicate(entity: Mapping[str, Any]) -> bool:
            instances = entity.get(iri)
            if not instances:
                return False
            for inst in instances if isinstance(instances, list) else (instances,):
                if type(inst) is dict and inst.get("type") == "Property":
                    value = inst.get("value")
                    if type(value) is dict and "@value" in value:
                        value = value["@value"]
                    if value is not None and test(_VALUE, value):
                        return True
                    continue
                found: list[Target] = []
                _extract(inst, (), found)
                for kind, value in found:
                    if test(kind, value):
                        return True
            return False

        return predicate


@dataclass(frozen=True)
class Query:
    """A parsed q; `compile(expand)` gives the fast predicate, `matches` the convenient one."""

    text: str
    root: Node
    _compiled: dict[int, tuple[Callable[[str], str], Predicate]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def attribute_terms(self) -> frozenset[str]:
        """Every attribute and sub-attribute term the caller must expand (core members excluded)."""
        out: set[str] = set()
        for path in _paths(self.root):
            while isinstance(path, LinkedPath):
                out.add(path.relationship)
                path = path.inner
            out.update(n for n in path.names if n not in SPECIAL_MEMBERS)
        return frozenset(out)

    def entity_type_terms(self) -> frozenset[str]:
        """The entity type hints of linked entity paths (`rel{Type:attr}`)."""
        out: set[str] = set()
        for path in _paths(self.root):
            while isinstance(path, LinkedPath):
                out.update(path.target_types)
                path = path.inner
        return frozenset(out)

    def compile(
        self,
        expand: Callable[[str], str],
        *,
        resolve: Resolver | None = None,
        expand_values: Collection[str] = (),
    ) -> Predicate:
        """A predicate over ENF entities; `resolve(id)` serves linked paths, `expand_values` names
        attributes whose string/URI query values are also compared expanded (clause 4.9)."""
        return _Compiler(expand, resolve, expand_values).node(self.root)

    def matches(self, entity: Mapping[str, Any], expand: Callable[[str], str]) -> bool:
        """Evaluate on one entity, reusing the predicate compiled for this `expand` function."""
        # Keyed by identity; the stored reference keeps `expand` alive so its id is not reused.
        cached = self._compiled.get(id(expand))
        if cached is None or cached[0] is not expand:
            cached = self._compiled[id(expand)] = (expand, self.compile(expand))
        return cached[1](entity)


def _paths(node: Node) -> list[Path]:
    if isinstance(node, (And, Or)):
        return [p for t in node.terms for p in _paths(t)]
    return [node.path]


def compile_q(text: str) -> Query:
    """Parse a q string (URL-decoded) into a Query; raise InvalidQuery on a syntax error."""
    return Query(text, parse_q(text))
