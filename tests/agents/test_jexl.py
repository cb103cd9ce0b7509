"""JEXL as iotagent-node-lib evaluates it: the examples of doc/api.md and doc/expressionLanguage.md."""

from __future__ import annotations

from typing import Any

import pytest

from agents.mapping.jexl import JexlError, evaluate

DOC_CONTEXT = {"value": 6, "ts": 1637245214901, "name": "DevId629", "object": {"name": "John", "surname": "Doe"},
               "array": [1, 3]}


@pytest.mark.parametrize(("expression", "expected"), [
    ("5 * value", 30),
    ("(6 + value) * 3", 36),
    ("value / 12 + 1", 1.5),
    ("(5 + 2) * (value + 7)", 91),
    ('"Pruebas " + "De Strings"', "Pruebas De Strings"),
    ('name + "value is " +value', "DevId629value is 6"),
    ("{coordinates: [value,value], type: 'Point'}", {"coordinates": [6, 6], "type": "Point"}),
    ("ts|toisodate", "2021-11-18T14:20:14.901Z"),
    ('" a "| trim', "a"),
    ("name|length", 8),
    ('name|indexOf("e")', 1),
    ('name|substr(0,name|indexOf("e")+1)', "De"),
    ("object.name + ' ' + object.surname", "John Doe"),
    ("array|addreduce", 4),
    ("array[1]", 3),
    ("value > 5 ? 'high' : 'low'", "high"),
    ("value == '6' && name != 'x'", True),
    ("2 + 3 * 4 - 10 / 5", 12),
    ("'a,b,c'|split(',')|joinarrtostr('-')", "a-b-c"),
    ("value|mapper([1,6],['one','six'])", "six"),
    ("value|thmapper([5,10],['low','mid'])", "mid"),
    ("'FF'|parseint", None),  # parseInt('FF') is NaN in JavaScript: not sent
    ("'12.5kg'|parsefloat", 12.5),
    ("3.14159|tofixed(2)", "3.14"),
])
def test_doc_examples(expression: str, expected: Any) -> None:
    assert evaluate(expression, DOC_CONTEXT) == expected


def test_multiple_transformations() -> None:
    assert evaluate("variable | trim | replacestr('hello','hi')", {"variable": " hello world "}) == "hi world"
    assert evaluate("location | split(', ')[1] | parsefloat()", {"location": "40.4165, -3.70256"}) == -3.70256


def test_undefined_and_nan_are_not_sent() -> None:
    assert evaluate("nonexistent * 2", {}) is None
    assert evaluate("longitude+', '+latitude", {"latitude": 1.9}) == "undefined, 1.9"
    assert evaluate("level / 100", {"level": 85.3}) == pytest.approx(0.853)


@pytest.mark.parametrize("expression", ["5 *", "a |", "(1 + 2", "{a: }", "value | nosuchtransform", "'x' # 2"])
def test_syntax_errors_raise(expression: str) -> None:
    with pytest.raises(JexlError):
        evaluate(expression, DOC_CONTEXT)


def test_failing_transform_raises() -> None:
    with pytest.raises(JexlError):
        evaluate("s|jsonparse", {"s": "{broken"})
