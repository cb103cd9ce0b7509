"""same_index: a shortcut that may only say "equal" when index_rows are equal."""

from __future__ import annotations

import copy
import random
from typing import Any

from broker.store.migrations import index_rows, same_index

GEO = "https://uri.etsi.org/ngsi-ld/location"


def doc(rnd: random.Random) -> dict[str, Any]:
    d: dict[str, Any] = {"id": "urn:ngsi-ld:T:1", "type": rnd.choice([["T"], ["T", "U"], ["U"]])}
    for name in rnd.sample(["a", "b", "c", GEO], rnd.randrange(1, 4)):
        kinds = ["GeoProperty"] if name == GEO else ["Property", "Relationship", "GeoProperty"]
        d[name] = [_instance(rnd, rnd.choice(kinds)) for _ in range(rnd.randrange(1, 3))]
    return d


def _instance(rnd: random.Random, kind: str) -> dict[str, Any]:
    if kind == "GeoProperty":
        return {"type": kind, "value": {"type": "Point", "coordinates": [rnd.choice([5.3, 5.4]), 43.3]}}
    member = "object" if kind == "Relationship" else "value"
    return {"type": kind, member: rnd.randrange(3)}


def mutate(rnd: random.Random, d: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(d)
    for _ in range(rnd.randrange(0, 3)):
        choice = rnd.randrange(5)
        if choice == 0:
            out["type"] = rnd.choice([["T"], ["U"]])
        elif choice == 1 and len(out) > 3:
            del out[rnd.choice([k for k in out if k not in ("id", "type")])]
        elif choice == 2:
            out[rnd.choice(["a", "b", "c"])] = [_instance(rnd, rnd.choice(["Property", "Relationship"]))]
        elif choice == 3:
            out[GEO] = [_instance(rnd, "GeoProperty")]
        else:
            name = rnd.choice([k for k in out if k not in ("id", "type")])
            for inst in out[name]:
                inst["observedAt"] = "2026-11-26T10:00:00Z"  # a reading's change: not the index's business
    return out


def test_same_index_never_claims_equal_rows_that_differ() -> None:
    rnd = random.Random(7)
    claimed = 0
    for _ in range(5000):
        a = doc(rnd)
        b = mutate(rnd, a)
        if same_index(a, b):
            claimed += 1
            assert index_rows(a) == index_rows(b), (a, b)
    assert claimed > 1000  # the shortcut does take the common case


def test_new_readings_keep_the_index() -> None:
    a = {"id": "x", "type": ["T"], "no2": [{"type": "Property", "value": 1}], GEO: [_instance(random.Random(1), "GeoProperty")]}
    b = copy.deepcopy(a)
    b["no2"][0]["value"] = 2
    assert same_index(a, b)
    b[GEO][0]["value"]["coordinates"] = [5.5, 43.3]
    assert not same_index(a, b)
