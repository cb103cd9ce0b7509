"""JEXL as iotagent-node-lib evaluates it (TomFrost/Jexl 2 semantics, JavaScript values).

Written here rather than taken from pyjexl because the agents' expressions rely
on JavaScript behaviour pyjexl does not have: `name + " is " + 6` concatenates,
an unknown variable is `undefined` and arithmetic on it gives NaN (the
attribute is then not sent), transforms bind to the operand before them and
may be indexed (`location | split(', ')[1] | parsefloat()`).

    evaluate("level / 100", {"level": 85.3})                       -> 0.853
    evaluate("{coordinates: [lon, lat], type: 'Point'}", ctx)       -> a dict
    evaluate("missing * 2", {})                                     -> None (NaN, undefined)

:class:`JexlError` is raised for a syntax error or a failing transform; an
undefined or NaN result is returned as ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.mapping import transforms as _transforms
from agents.mapping.jsvalues import NAN, UNDEFINED, js_number, js_string

__all__ = ["UNDEFINED", "JexlError", "compile_expression", "evaluate", "js_number", "js_string", "variables"]


class JexlError(ValueError):
    """An expression that does not parse, or whose evaluation fails."""



_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+\.\d*|\.\d+|\d+)
     |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
     |(?P<op>//|==|!=|>=|<=|&&|\|\||[-+*/%^<>!|?:.,\[\]{}()])
     |(?P<name>[A-Za-z_$@][A-Za-z0-9_$@]*)
    )""",
    re.VERBOSE,
)

_BINARY = {
    "||": 10, "&&": 10, "==": 20, "!=": 20, ">": 20, ">=": 20, "<": 20, "<=": 20, "in": 20,
    "+": 30, "-": 30, "*": 40, "/": 40, "//": 40, "%": 50, "^": 50,
}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    value: Any


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise JexlError(f"unexpected character {text[pos:].lstrip()[:1]!r} at {pos} in {text!r}")
        pos = m.end()
        if m.group("num") is not None:
            n = m.group("num")
            out.append(_Tok("lit", float(n) if "." in n else int(n)))
        elif m.group("str") is not None:
            raw = m.group("str")[1:-1]
            out.append(_Tok("lit", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("op") is not None:
            out.append(_Tok("op", m.group("op")))
        else:
            name = m.group("name")
            if name in ("true", "false"):
                out.append(_Tok("lit", name == "true"))
            elif name == "null":
                out.append(_Tok("lit", None))
            elif name == "undefined":
                out.append(_Tok("lit", UNDEFINED))
            elif name == "in":
                out.append(_Tok("op", "in"))
            else:
                out.append(_Tok("name", name))
    return out


Node = Callable[[dict[str, Any]], Any]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def at(self, op: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "op" and t.value == op

    def take(self, op: str) -> None:
        if not self.at(op):
            t = self.peek()
            raise JexlError(f"expected {op!r} but found {t.value if t else 'end'!r} in {self.text!r}")
        self.i += 1

    def parse(self) -> Node:
        if not self.toks:
            raise JexlError("empty expression")
        node = self.ternary()
        if self.peek() is not None:
            raise JexlError(f"unexpected {self.peek().value!r} in {self.text!r}")  # type: ignore[union-attr]
        return node

    def ternary(self) -> Node:
        cond = self.binary(0)
        if self.at("?"):
            self.i += 1
            if self.at(":"):  # elvis: a ?: b
                self.i += 1
                other = self.ternary()
                return lambda c: v if _truthy(v := cond(c)) else other(c)
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return lambda c: yes(c) if _truthy(cond(c)) else no(c)
        return cond

    def binary(self, min_prec: int) -> Node:
        left = self.unary()
        while True:
            t = self.peek()
            if t is None or t.kind != "op" or t.value not in _BINARY or _BINARY[t.value] < min_prec:
                return left
            self.i += 1
            right = self.binary(_BINARY[t.value] + 1)
            left = _binop(t.value, left, right)

    def unary(self) -> Node:
        if self.at("!"):
            self.i += 1
            operand = self.unary()
            return lambda c: not _truthy(operand(c))
        if self.at("-"):
            self.i += 1
            operand = self.unary()
            return lambda c: _neg(operand(c))
        return self.postfix(self.primary())

    def primary(self) -> Node:
        t = self.peek()
        if t is None:
            raise JexlError(f"unexpected end of {self.text!r}")
        self.i += 1
        if t.kind == "lit":
            value = t.value
            return lambda c: value
        if t.kind == "name":
            name = t.value
            return lambda c: c.get(name, UNDEFINED)
        if t.value == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        if t.value == "[":
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.ternary())
                if not self.at("]"):
                    self.take(",")
            self.i += 1
            return lambda c: [n(c) for n in items]
        if t.value == "{":
            pairs: list[tuple[str, Node]] = []
            while not self.at("}"):
                key = self.peek()
                if key is None or key.kind not in ("name", "lit") or not isinstance(key.value, (str, bool)):
                    raise JexlError(f"bad object key in {self.text!r}")
                self.i += 1
                self.take(":")
                pairs.append((str(key.value) if not isinstance(key.value, bool) else str(key.value).lower(), self.ternary()))
                if not self.at("}"):
                    self.take(",")
            self.i += 1
            return lambda c: {k: n(c) for k, n in pairs}
        raise JexlError(f"unexpected {t.value!r} in {self.text!r}")

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("."):
                self.i += 1
                t = self.peek()
                if t is None or t.kind != "name":
                    raise JexlError(f"expected a property name after '.' in {self.text!r}")
                self.i += 1
                node = _member(node, _constant(t.value))
            elif self.at("["):
                self.i += 1
                index = self.ternary()
                self.take("]")
                node = _member(node, index)
            elif self.at("|"):
                self.i += 1
                t = self.peek()
                if t is None or t.kind != "name":
                    raise JexlError(f"expected a transform name after '|' in {self.text!r}")
                self.i += 1
                args: list[Node] = []
                if self.at("("):
                    self.i += 1
                    while not self.at(")"):
                        args.append(self.ternary())
                        if not self.at(")"):
                            self.take(",")
                    self.i += 1
                node = _transform(t.value, node, args)
            else:
                return node


def _constant(value: Any) -> Node:
    return lambda c: value


def _truthy(v: Any) -> bool:
    if v is None or v is UNDEFINED:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    if isinstance(v, (list, dict)):
        return True
    return bool(v)


def _tidy(x: float) -> float:
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


def _neg(v: Any) -> Any:
    n = js_number(v)
    return -n


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and (isinstance(a, (str, list, dict)) or isinstance(b, (str, list, dict))):
        return js_string(a) + js_string(b)
    x, y = js_number(a), js_number(b)
    if isinstance(x, float) and math.isnan(x) or isinstance(y, float) and math.isnan(y):
        return NAN
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            return _tidy(x / y)
        if op == "//":
            return math.floor(x / y)
        if op == "%":
            return _tidy(math.fmod(x, y))
        if op == "^":
            return _tidy(x**y)
    except ZeroDivisionError:
        return NAN if x == 0 else math.copysign(math.inf, x) * math.copysign(1, y)
    raise JexlError(f"unknown operator {op}")  # pragma: no cover


def _loose_eq(a: Any, b: Any) -> bool:
    if a is UNDEFINED:
        a = None
    if b is UNDEFINED:
        b = None
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, (int, float, bool, str)) and isinstance(b, (int, float, bool, str)):
        return js_number(a) == js_number(b)
    return a is b


def _compare(op: str, a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        a, b = js_number(a), js_number(b)
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return False
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _binop(op: str, left: Node, right: Node) -> Node:
    if op == "&&":
        return lambda c: right(c) if _truthy(v := left(c)) else v
    if op == "||":
        return lambda c: v if _truthy(v := left(c)) else right(c)
    if op == "==":
        return lambda c: _loose_eq(left(c), right(c))
    if op == "!=":
        return lambda c: not _loose_eq(left(c), right(c))
    if op in ("<", "<=", ">", ">="):
        return lambda c: _compare(op, left(c), right(c))
    if op == "in":
        def _in(c: dict[str, Any]) -> bool:
            needle, hay = left(c), right(c)
            if isinstance(hay, str):
                return js_string(needle) in hay
            if isinstance(hay, list):
                return any(_loose_eq(needle, x) and type(needle) is type(x) or needle == x for x in hay)
            return False
        return _in
    return lambda c: _arith(op, left(c), right(c))


def _member(obj: Node, key: Node) -> Node:
    def get(c: dict[str, Any]) -> Any:
        o, k = obj(c), key(c)
        if isinstance(o, dict):
            return o.get(js_string(k), UNDEFINED)
        if isinstance(o, (list, str)):
            if k == "length":
                return len(o)
            n = js_number(k)
            if isinstance(n, (int, float)) and not (isinstance(n, float) and math.isnan(n)) and float(n).is_integer():
                i = int(n)
                return o[i] if 0 <= i < len(o) else UNDEFINED
            return UNDEFINED
        if o is None or o is UNDEFINED:
            raise JexlError(f"cannot read property {js_string(k)!r} of {js_string(o)}")
        return UNDEFINED
    return get


def _transform(name: str, subject: Node, args: list[Node]) -> Node:
    fn = _transforms.TRANSFORMS.get(name)
    if fn is None:
        raise JexlError(f"unknown transform {name!r}")

    def call(c: dict[str, Any]) -> Any:
        values = [subject(c), *(a(c) for a in args)]
        try:
            return fn(*values)
        except JexlError:
            raise
        except Exception as exc:  # noqa: BLE001 - a JavaScript TypeError in the agent
            raise JexlError(f"transform {name} failed on {js_string(values[0])[:60]!r}: {exc}") from None
    return call


#: distinct texts kept parsed (and scanned for names): expressions come from provisioning, so the bound
#: only guards memory against an unbounded variety of them
_CACHE_MAX = 4096
_CACHE: dict[str, Node] = {}
_VARIABLES: dict[str, frozenset[str]] = {}


def variables(text: str) -> frozenset[str]:
    """The context names an expression reads (not members, transforms or object keys); found once per text."""
    names = _VARIABLES.get(text)
    if names is None:
        names = frozenset(_read_names(text))
        if len(_VARIABLES) < _CACHE_MAX:
            _VARIABLES[text] = names
    return names


def _read_names(text: str) -> set[str]:
    toks = _tokenize(text)
    names: set[str] = set()
    braces: list[str] = []
    for i, t in enumerate(toks):
        if t.kind == "op" and t.value in ("{", "[", "("):
            braces.append(t.value)
        elif t.kind == "op" and t.value in ("}", "]", ")") and braces:
            braces.pop()
        if t.kind != "name":
            continue
        before = toks[i - 1] if i else None
        after = toks[i + 1] if i + 1 < len(toks) else None
        if before is not None and before.kind == "op" and before.value in (".", "|"):
            continue
        is_key = (braces and braces[-1] == "{" and before is not None and before.kind == "op"
                  and before.value in ("{", ",") and after is not None and after.value == ":")
        if not is_key:
            names.add(t.value)
    return names


def compile_expression(text: str) -> Node:
    """Parse once; the returned function evaluates the expression on a context."""
    node = _CACHE.get(text)
    if node is None:
        node = _Parser(text).parse()
        if len(_CACHE) < _CACHE_MAX:
            _CACHE[text] = node
    return node


def evaluate(text: str, context: dict[str, Any]) -> Any:
    """The value of an expression; ``None`` for undefined, null or NaN results."""
    node = compile_expression(text)
    try:
        value = node(context)
    except JexlError:
        raise
    except RecursionError:
        raise JexlError("expression too deep") from None
    return _clean(value)


def _clean(value: Any) -> Any:
    if value is UNDEFINED or value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, list):
        return [None if x is UNDEFINED else _clean(x) if isinstance(x, (list, dict)) else x for x in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not UNDEFINED}
    return value
