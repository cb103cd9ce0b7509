"""broker.query.regex: RE2 only, refusals as InvalidQuery, and the anchored prefix PostgreSQL narrows with."""

from __future__ import annotations

import pytest

from broker.query.regex import compile_pattern, literal_prefix
from models.errors import InvalidQuery


@pytest.mark.parametrize("pattern, prefix", [
    (r"^urn:ngsi-ld:Redos30:(a+)+$", "urn:ngsi-ld:Redos30:"), ("^urn:ngsi-ld:Car:.*", "urn:ngsi-ld:Car:"),
    ("^ab*", "a"), ("^ab?c", "a"), ("^ab{2}", "a"), (r"^a\.b", "a.b"), ("abc", ""), ("^x|y", ""), (r"^urn\d", "urn"),
    ("^(a)", ""), ("^", ""), ("^a+", "a"),
])
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix
    if prefix:  # every match starts with it
        rx = compile_pattern(pattern)
        for text in (prefix + "aaa", prefix + "bbb1", "x" + prefix):
            if rx.search(text):
                assert text.startswith(prefix)


def test_the_engine_is_linear_and_refuses_what_is_not() -> None:
    assert compile_pattern("(a+)+$").search("a" * 100_000 + "!") is None
    for bad in (r"(a)\1", "(?=a)", "(?<!a)b", "a{1001}", "(", "x" * 1025):
        with pytest.raises(InvalidQuery):
            compile_pattern(bad)
    with pytest.raises(InvalidQuery):
        compile_pattern(None)  # type: ignore[arg-type]
