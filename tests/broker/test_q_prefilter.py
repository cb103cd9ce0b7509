"""The SQL prefilter derived from q (broker.query.q_sql): a superset of what the q predicate accepts, on both stores."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from broker.query.q import compile_q, parse_q
from broker.query.q_sql import AllOf, AnyOf, AttrExists, AttrNumberIn, q_prefilter
from broker.service.queries import QuerySpec
from broker.store import EntityFilter, Store
from tests.broker.test_store import AQO, NO2, NS, T0, entity, ids, query_ids, run, url  # noqa: F401 - `url` is a fixture


def expand(term: str) -> str:
    return NS + term


def prefilter(q: str) -> object:
    return q_prefilter(parse_q(q), expand)


# ----------------------------------------------------------------------------- what is pushed down


def test_numeric_comparisons_and_existence_are_pushed_down_with_widened_bounds() -> None:
    pf = prefilter("no2>100")
    assert isinstance(pf, AttrNumberIn) and pf.iri == NO2
    ((low, high),) = pf.intervals
    assert high is None and 99.9999 < low < 100  # widened: the stores read numbers their own way
    pf = prefilter("no2<=3;pm10==1..2|temp==4,5,6.5|temp")
    assert isinstance(pf, AnyOf) and isinstance(pf.terms[0], AllOf) and pf.terms[2] == AttrExists(NS + "temp")
    assert [len(t.intervals) for t in (*pf.terms[0].terms, pf.terms[1])] == [1, 1, 3]  # type: ignore[union-attr]
    # unpushable terms of a conjunction are dropped: the rest still holds for every match
    assert prefilter('no2>1;name=="x";!pm10;no2!=5;name~=a') == prefilter("no2>1")


@pytest.mark.parametrize(
    "q",
    [
        "no2!=100", "!no2", "no2~=1", 'no2=="100"', "no2==true", "no2==2026-01-01", 'no2=="a".."b"',
        'no2==1,"x"', "no2.observedAt>1", "no2.sub>1", "no2[k]>1", "no2>1|name~=x", "no2>1|!pm10",
        "no2>1e999", "no2<" + "9" * 400, "no2<1.7976931348623157e308",
    ],
)  # fmt: skip
def test_negations_strings_paths_and_unbounded_numbers_are_not_pushed_down(q: str) -> None:
    assert prefilter(q) is None


def test_keys_needing_escapes_in_a_json_path_are_not_pushed_down() -> None:
    assert q_prefilter(parse_q("a>1;b"), lambda t: 'urn:x:"' + t) is None
    assert q_prefilter(parse_q("a>1;b"), lambda t: "urn:x:\\" + t) is None


def test_query_spec_puts_the_prefilter_of_q_on_the_filter() -> None:
    class Ctx:
        def expand_term(self, term: str) -> str:
            return expand(term)

        def compact_iri(self, iri: str) -> str:
            return iri.removeprefix(NS)

    flt = QuerySpec.from_params({"type": "AirQualityObserved", "q": "no2>100;name~=x"}).to_filter(Ctx())
    assert flt.prefilter == prefilter("no2>100") and flt.predicate is not None
    assert QuerySpec.from_params({"type": "AirQualityObserved"}).to_filter(Ctx()).prefilter is None


# ----------------------------------------------------------------------------- the stores apply it


def counting(predicate: Callable[[dict[str, Any]], bool], calls: list[int]) -> Callable[[dict[str, Any]], bool]:
    def counted(doc: dict[str, Any]) -> bool:
        calls.append(1)
        return predicate(doc)

    return counted


@pytest.mark.parametrize(
    ("q", "matches", "decoded"),
    [("no2>89.5", 10, 10), ("no2<=4.5|pm10==50", 6, 6), ("no2>=10;no2<19.5;!pm10", 9, 10), ("pm10", 1, 1)],
)
def test_the_store_decodes_only_the_candidates_the_prefilter_lets_through(
    url: str, q: str, matches: int, decoded: int  # noqa: F811 - the fixture
) -> None:
    if url.startswith("sqlite"):
        decoded = 100  # SQLite leaves the prefilter to the predicate (see SQLiteStore._where_rest)
    async def body(store: Store) -> None:
        await store.insert("", [entity(n, no2=float(n)) for n in range(100) if n != 15], T0)
        await store.insert("", [entity(15, no2=15.0, pm10=50)], T0)
        query = compile_q(q)
        calls: list[int] = []
        flt = EntityFilter(type_dnf=[frozenset({AQO})], predicate=counting(query.compile(expand), calls),
                           prefilter=q_prefilter(query.root, expand))
        page = await store.query("", flt, limit=100, offset=0, count=True)
        assert page.total == len(page.entities) == matches
        assert len(calls) == decoded  # not 100: the SQL condition dropped the others
        calls.clear()  # a page without count is another statement on PostgreSQL
        first = await store.query("", flt, limit=2, offset=1, count=False)
        assert ids(first.entities) == ids(page.entities)[1:3] and len(calls) <= decoded

    run(url, body)


# ----------------------------------------------------------------------------- never a wrong answer

_NUMBERS: list[int | float] = [
    0, -0.0, 1, -1, 2, 3, 7, 0.1, 0.2, 0.30000000000000004, 0.3, 99.99999999, 100, 100.0000000001, 123456.789,
    2**53, 2**53 + 1, 2**63 - 1, 2**64 - 1, -(2**63), 1e16, 1e-310, 5e-324, -5e-324, 1e300,
    1.7976931348623157e308, -1.7976931348623157e308, math.nextafter(100, math.inf), math.nextafter(100, -math.inf),
]  # fmt: skip
_ATTRS = ("a", "b", "c")


def _number(rng: random.Random) -> int | float:
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(_NUMBERS)
    if pick < 0.8:
        return rng.randint(-5, 120)
    return round(rng.uniform(-5, 120), rng.randint(0, 3))


def _instance(rng: random.Random) -> Any:
    n = _number(rng)
    return rng.choice([
        {"type": "Property", "value": n},
        {"type": "Property", "value": n, "datasetId": f"urn:ngsi-ld:Dataset:{rng.randint(1, 3)}", "observedAt": T0},
        {"type": "Property", "value": n, "unitCode": "GQ"},
        {"type": "Property", "value": str(n)},
        {"type": "Property", "value": rng.choice([True, False])},
        {"type": "Property", "value": None},
        {"type": "Property"},
        {"type": "Property", "value": [n, _number(rng), "x"]},
        {"type": "Property", "value": {"@type": "Number", "@value": n}},
        {"type": "Property", "value": {"k": n}},
        {"type": "Relationship", "object": "urn:ngsi-ld:Device:1"},
        {"type": "Relationship", "object": n},  # malformed, but the predicate reads it
        {"type": "Relationship", "object": n, "value": _number(rng)},  # the predicate reads `object` only
        {"type": "LanguageProperty", "languageMap": {"en": n}, "value": _number(rng)},
        {"type": "LanguageProperty", "languageMap": {"en": n, "fr": "x"}},
        {"type": "ListProperty", "valueList": [n]},
        {"type": "VocabProperty", "vocab": n},
        {"type": "JsonProperty", "json": n},
        {"type": "GeoProperty", "value": n},
        {"value": n},
        {"type": "property", "value": n},
        {"type": "Property", "value": n, "sub": {"type": "Property", "value": _number(rng)}},
        n, "x", None,
    ])  # fmt: skip


def _doc(k: int, rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": f"urn:ngsi-ld:Thing:{k:04d}", "type": [AQO]}
    for name in _ATTRS:
        shape = rng.random()
        if shape < 0.25:
            continue  # missing
        if shape < 0.85:
            doc[NS + name] = [_instance(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        elif shape < 0.9:  # a single instance, not in an array: the predicate accepts it
            doc[NS + name] = {"type": "Property", "value": _number(rng)}
        elif shape < 0.95:
            doc[NS + name] = []
        else:  # a single object again, whose only member looks like a Property instance
            doc[NS + name] = {"value": {"type": "Property", "value": 1, "@value": _number(rng)}}
    return doc


def _literal(rng: random.Random) -> str:
    n = rng.choice([_number(rng), rng.choice(_NUMBERS)]) if rng.random() < 0.9 else rng.choice(["1e999", "9" * 30])
    return n if isinstance(n, str) else json.dumps(n)


def _term(rng: random.Random, depth: int) -> str:
    if depth > 0 and rng.random() < 0.35:
        joiner = rng.choice([";", "|"])
        return "(" + joiner.join(_term(rng, depth - 1) for _ in range(rng.randint(2, 3))) + ")"
    name = rng.choice(_ATTRS)
    kind = rng.random()
    if kind < 0.45:
        return f"{name}{rng.choice(['==', '!=', '>', '>=', '<', '<='])}{_literal(rng)}"
    if kind < 0.55:
        return f"{name}=={_literal(rng)}..{_literal(rng)}"
    if kind < 0.65:
        return f"{name}==" + ",".join(_literal(rng) for _ in range(rng.randint(2, 3)))
    if kind < 0.8:
        return rng.choice([name, "!" + name])
    return rng.choice([f'{name}=="x"', f"{name}~=^1", f"{name}.sub>1", f"{name}[k]>1", f"{name}==true", f'{name}==1,"1"'])


def test_the_prefilter_never_changes_query_results(url: str) -> None:  # noqa: F811 - the fixture
    rng = random.Random(20261126)
    docs = [_doc(k, rng) for k in range(150)]
    queries = [_term(rng, 3) for _ in range(300)]

    async def body(store: Store) -> None:
        await store.insert("", docs, T0)
        stored = {d["id"]: d for d in docs}
        pushed = narrowed = 0
        for q in queries:
            query = compile_q(q)
            predicate, pf = query.compile(expand), q_prefilter(query.root, expand)
            expected = [i for i in sorted(stored) if predicate(stored[i])]
            base = {"type_dnf": [frozenset({AQO})], "predicate": predicate}
            assert await query_ids(store, **base) == expected, q
            if pf is None:
                continue
            pushed += 1
            assert await query_ids(store, **base, prefilter=pf) == expected, q
            page = await store.query("", EntityFilter(**base, prefilter=pf), limit=3, offset=2, count=True)
            assert ids(page.entities) == expected[2:5] and page.total == len(expected), q
            candidates = await query_ids(store, type_dnf=[frozenset({AQO})], prefilter=pf)  # the SQL alone
            assert set(expected) <= set(candidates), q
            narrowed += len(candidates) < len(docs)
        # the generated queries exercise the pushdown, and it does drop candidates where the store
        # applies it (SQLite ignores it: see SQLiteStore._where_rest)
        assert pushed > len(queries) // 3, pushed
        assert narrowed > len(queries) // 5 if url.startswith("postgresql") else narrowed == 0, narrowed

    run(url, body)
