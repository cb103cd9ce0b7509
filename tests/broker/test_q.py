"""The q language (clause 4.9): the spec's examples, semantics on ENF entities, errors, properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.q import (
    And,
    Boolean,
    Comparison,
    Exists,
    LinkedPath,
    NotExists,
    Number,
    Or,
    Pattern,
    Range,
    String,
    Temporal,
    Uri,
    ValueList,
    ValuePath,
    compile_q,
    parse_q,
    to_text,
)
from models.errors import InvalidQuery, OperationNotSupported

NS = "https://example.org/"


def expand(term: str) -> str:
    return NS + term


def prop(value: Any, **members: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, **members}]


def entity(**attrs: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": "urn:ngsi-ld:T:1", "type": [NS + "T"]}
    e.update({NS + k: v for k, v in attrs.items()})
    return e


def match(q: str, e: dict[str, Any], **kw: Any) -> bool:
    return compile_q(q).compile(expand, **kw)(e)


# ----------------------------------------------------------------------------- parsing: the spec's examples

P = ValuePath


@pytest.mark.parametrize(
    ("text", "ast"),
    [
        ("temperature", Exists(P(("temperature",)))),  # example 0
        ("temperature==20", Comparison(P(("temperature",)), "==", Number(20))),  # example 1
        ('brandName!="Mercedes"', Comparison(P(("brandName",)), "!=", String("Mercedes"))),  # example 2
        (
            'isParked=="urn:ngsi-ld:OffStreetParking:Downtown1"',  # example 3
            Comparison(P(("isParked",)), "==", String("urn:ngsi-ld:OffStreetParking:Downtown1")),
        ),
        (
            'speed>50;brandName!="Mercedes"',  # example 4
            And((Comparison(P(("speed",)), ">", Number(50)), Comparison(P(("brandName",)), "!=", String("Mercedes")))),
        ),
        ("isMonitoredBy", Exists(P(("isMonitoredBy",)))),  # example 5
        (
            '((speed>50|rpm>3000);brandName=="Mercedes")',  # example 6
            And(
                (
                    Or((Comparison(P(("speed",)), ">", Number(50)), Comparison(P(("rpm",)), ">", Number(3000)))),
                    Comparison(P(("brandName",)), "==", String("Mercedes")),
                )
            ),
        ),
        (
            "(temperature>=20;temperature<=25)|capacity<=10",  # example 7
            Or(
                (
                    And((Comparison(P(("temperature",)), ">=", Number(20)), Comparison(P(("temperature",)), "<=", Number(25)))),
                    Comparison(P(("capacity",)), "<=", Number(10)),
                )
            ),
        ),
        (
            "temperature.observedAt>=2017-12-24T12:00:00Z",  # example 8
            Comparison(P(("temperature", "observedAt")), ">=", Temporal("dateTime", "2017-12-24T12:00:00Z")),
        ),
        ('address[city]=="Berlin"', Comparison(P(("address",), ("city",)), "==", String("Berlin"))),  # example 9
        (
            "sensor.rawdata[airquality.particulate]==40",  # example 10
            Comparison(P(("sensor", "rawdata"), ("airquality", "particulate")), "==", Number(40)),
        ),
        ("gender==Male", Comparison(P(("gender",)), "==", Uri("Male"))),  # example 12
        ("sensor{humidity}==40", Comparison(LinkedPath("sensor", (), P(("humidity",))), "==", Number(40))),  # 13
        (
            "sensor{Device:humidity}==40",  # example 14
            Comparison(LinkedPath("sensor", ("Device",), P(("humidity",))), "==", Number(40)),
        ),
        ('color=="black","red"', Comparison(P(("color",)), "==", ValueList((String("black"), String("red"))))),
        ("temperature==10..20", Comparison(P(("temperature",)), "==", Range(Number(10), Number(20)))),
        ('color[en]=="red"', Comparison(P(("color",), ("en",)), "==", String("red"))),
        ('color[*]!="red"', Comparison(P(("color",), ("*",)), "!=", String("red"))),
        ("color==http://example/red", Comparison(P(("color",)), "==", Uri("http://example/red"))),
        ("on==true", Comparison(P(("on",)), "==", Boolean(True))),
        ("d<2020-01-31", Comparison(P(("d",)), "<", Temporal("date", "2020-01-31"))),
        ("t>12:30:00Z", Comparison(P(("t",)), ">", Temporal("time", "12:30:00Z"))),
        ("x>=-1.5e3", Comparison(P(("x",)), ">=", Number(-1500.0))),
        ("name~=^Ai.(x|y)", Pattern(P(("name",)), "^Ai.(x|y)")),
        ('name!~="a|b"', Pattern(P(("name",)), "a|b", True)),
        ("!humidity", NotExists(P(("humidity",)))),
        ("a{T1,T2:b{U:c.d[e]}}", Exists(LinkedPath("a", ("T1", "T2"), LinkedPath("b", ("U",), P(("c", "d"), ("e",)))))),
        ("a;b|c", Or((And((Exists(P(("a",))), Exists(P(("b",))))), Exists(P(("c",)))))),
        ("a|b;c", Or((Exists(P(("a",))), And((Exists(P(("b",))), Exists(P(("c",)))))))),
        ("température>2", Comparison(P(("température",)), ">", Number(2))),
        ("speed > 50", Comparison(P(("speed",)), ">", Number(50))),
    ],
)
def test_parses(text: str, ast: object) -> None:
    assert parse_q(text) == ast
    assert parse_q(to_text(parse_q(text))) == ast


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "a query term"),
        ("temperature==", 13, "a value"),
        ("temperature>true", 12, "a number, quoted string, date or time"),
        ("a>1,2", 3, "';', '|' or end"),
        ("(a==1", 5, "')'"),
        ("a==1)", 4, "unbalanced"),
        ('a=="open', 3, "JSON string"),
        ("1a==2", 0, "an attribute name"),
        ("a.==2", 2, "an attribute name after '.'"),
        ("a[b==2", 3, "']'"),
        ("a[]==2", 2, "a member name"),
        ("a==2017-13-45", 3, "a valid date"),
        ("a~=", 3, "a regular expression"),
        ("a~=(", 3, "invalid regular expression"),
        ("a==1..\"z\"", 3, "same type"),
        ("a;;b", 2, "an attribute name"),
        ("a.observedAt.b", 12, "nothing after the core member"),
        ("a{T:b", 5, "'}'"),
        ("a{T,:b}", 4, "an entity type"),
        ("a==20x", 3, "a value"),
        ("a[x.*]==1", 4, "'*' alone"),
    ],
)
def test_syntax_errors_name_position_and_expectation(text: str, position: int, expected: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_q(text)
    assert f"position {position}" in info.value.detail
    assert expected in info.value.detail
    assert info.value.to_problem()["status"] == 400


def test_attribute_terms_exclude_core_members_and_trails() -> None:
    query = compile_q("a.observedAt>2020-01-01T00:00:00Z;b.c[d.e]==1|f{T:g}==2|!h")
    assert query.attribute_terms() == {"a", "b", "c", "f", "g", "h"}
    assert query.entity_type_terms() == {"T"}


# ----------------------------------------------------------------------------- semantics

CAR = entity(
    speed=prop(80),
    rpm=prop(2000),
    brandName=prop("Mercedes"),
    temperature=prop(22.5, observedAt="2017-12-24T13:00:00Z", unitCode="CEL"),
    isParked=[{"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Downtown1"}],
    address=prop({"city": "Berlin", "street": "Ulrich Strasse"}),
    sensor=prop(
        40, **{NS + "rawdata": {"type": "Property", "value": {"airquality": {"particulate": 40, "PM20": 85}}}}
    ),
    parkingTickets=[{"type": "JsonProperty", "json": {"id": "85a6cc52", "value": "Overstay 60 minutes"}}],
    gender=[{"type": "VocabProperty", "vocab": NS + "Male"}],
    color=[{"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red", "de": "rot"}}],
    tags=prop(["blue", "red", "green"]),
    readings=[{"type": "ListProperty", "valueList": [3, 7, 11]}],
    on=prop(True),
    day=prop("2020-01-15"),
    opens=prop("08:30:00Z"),
)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("speed", True),
        ("humidity", False),
        ("!humidity", True),
        ("!speed", False),
        ("speed==80", True),
        ("speed==80.0", True),
        ("speed==81", False),
        ("speed!=81", True),
        ("speed!=80", False),
        ('speed=="80"', False),  # type mismatch: not equal
        ('speed!="80"', True),  # type mismatch: unequal (clause 4.9)
        ('speed>"a"', False),
        ("speed>50", True),
        ("speed>80", False),
        ("speed>=80", True),
        ("speed<80", False),
        ("speed<=80", True),
        ('speed>50;brandName!="Mercedes"', False),
        ('((speed>50|rpm>3000);brandName=="Mercedes")', True),
        ('((speed>90|rpm>3000);brandName=="Mercedes")', False),
        ("(temperature>=20;temperature<=25)|capacity<=10", True),
        ("(temperature>=23;temperature<=25)|capacity<=10", False),
        ("speed==70..90", True),
        ("speed==81..90", False),
        ("speed!=81..90", True),
        ("speed==1,80,3", True),
        ("speed!=1,2,3", True),
        ("speed!=1,80", False),
        ('brandName=="Audi","Mercedes"', True),
        ('brandName~=^Merc', True),
        ('brandName~="^merc"', False),
        ('brandName~="(?i)^merc"', True),
        ("brandName!~=^Audi", True),
        ("speed~=8", False),  # not a string
        ("speed!~=8", False),
        ('brandName=="A".."N"', True),
        ("temperature.observedAt>=2017-12-24T12:00:00Z", True),
        ("temperature.observedAt>=2017-12-24T14:00:00+01:00", True),  # 13:00Z
        ("temperature.observedAt>2017-12-24T14:00:00+01:00", False),
        ("temperature.observedAt==2017-12-24T13:00:00.000Z", True),
        ("temperature.observedAt<2017-12-24", False),  # a date does not compare with a dateTime
        ('temperature.unitCode=="CEL"', True),
        ("temperature.datasetId", False),
        ("speed.observedAt", False),
        ('isParked=="urn:ngsi-ld:OffStreetParking:Downtown1"', True),
        ("isParked==urn:ngsi-ld:OffStreetParking:Downtown1", True),
        ("isParked!=urn:ngsi-ld:OffStreetParking:Downtown1", False),
        ('isParked>"a"', False),  # relationships only compare for (in)equality
        ('isParked~="Downtown"', False),
        ('address[city]=="Berlin"', True),
        ('address[city]=="Paris"', False),
        ("address[country]", False),
        ("address[city]", True),
        ("address[city.x]", False),
        ("sensor.rawdata[airquality.particulate]==40", True),
        ("sensor.rawdata[airquality.PM20]>90", False),
        ("sensor.rawdata", True),
        ("sensor.other", False),
        ('parkingTickets[value]=="Overstay 60 minutes"', True),
        ("gender==Male", True),  # the query value is expanded too (VocabProperty)
        ("gender==Female", False),
        (f"gender=={NS}Male", True),
        ('color=="red"', True),
        ('color[en]=="red"', True),
        ('color[fr]=="red"', False),
        ('color[*]=="rot"', True),
        ('color[*]!="red"', False),
        ('color[*]!="black"', True),
        ('color[es]=="rojo"', False),
        ("color[es]", False),
        ('color~="^ro"', True),
        ('tags=="red"', True),
        ('tags=="black"', False),
        ('tags!="red"', False),
        ('tags!="black"', True),
        ('tags=="black","red"', True),
        ("readings==7", True),
        ("readings==8", False),
        ("readings>10", True),
        ("readings==10..12", True),
        ("on==true", True),
        ("on==false", False),
        ("on==1", False),
        ("speed==true", False),
        ("day==2020-01-15", True),
        ("day>2020-01-14", True),
        ("day<2020-01-14", False),
        ('day=="2020-01-15"', True),
        ("opens<09:00:00Z", True),
        ("opens>=08:30:00+00:00", True),
        ("opens>08:30", False),
        ("opens<07:30:00-01:00", False),  # 08:30Z
    ],
)
def test_semantics(q: str, expected: bool) -> None:
    assert match(q, CAR) is expected
    assert compile_q(q).matches(CAR, expand) is expected


def test_language_map_arrays() -> None:
    e = entity(color=[{"type": "LanguageProperty", "languageMap": {"fr": ["chat", "rouge"], "en": ["red", "cat"]}}])
    assert match('color[en]=="red"', e)
    assert not match('color[fr]=="red"', e)
    assert not match('color[*]!="cat"', e)
    assert match('color[*]!="coal"', e)


def test_any_instance_of_a_multi_attribute_matches() -> None:
    e = entity(temperature=[{"type": "Property", "value": 10, "datasetId": "urn:a"}, {"type": "Property", "value": 30}])
    assert match("temperature>25", e)
    assert match("temperature<15", e)
    assert not match("temperature==20", e)
    assert match('temperature.datasetId=="urn:a"', e)


def test_typed_literal_values_and_list_relationships() -> None:
    e = entity(
        when=prop({"@type": "DateTime", "@value": "2024-05-01T10:00:00Z"}),
        friends=[{"type": "ListRelationship", "objectList": [{"object": "urn:a"}, {"object": "urn:b"}]}],
        place=prop({"type": "Point", "coordinates": [1, 2]}),
    )
    assert match("when>2024-05-01T09:00:00Z", e)
    assert match("friends==urn:b", e)
    assert not match("friends!=urn:b", e)
    assert not match('friends>"a"', e)
    assert not match("place==1", e)
    assert match('place[type]=="Point"', e)  # a trail walks into any object value
    assert not match("place[coordinates]==3", e)
    assert match("place", e)


def test_expand_values_compares_the_expanded_query_value() -> None:
    e = entity(category=prop(NS + "commercial"))
    assert not match("category==commercial", e)
    assert match("category==commercial", e, expand_values={"category"})


def test_linked_entity_paths_follow_relationships() -> None:
    station = entity(sensor=[{"type": "Relationship", "object": "urn:ngsi-ld:Device:345"}])
    device = {"id": "urn:ngsi-ld:Device:345", "type": [NS + "Device"], NS + "humidity": prop(40)}
    store = {device["id"]: device}
    assert match("sensor{humidity}==40", station, resolve=store.get)
    assert match("sensor{Device:humidity}==40", station, resolve=store.get)
    assert not match("sensor{Vehicle:humidity}==40", station, resolve=store.get)
    assert not match("sensor{humidity}==41", station, resolve=store.get)
    assert not match("sensor{humidity}", entity(), resolve=store.get)
    with pytest.raises(OperationNotSupported):
        compile_q("sensor{humidity}==40").compile(expand)


def test_each_term_is_expanded_once_per_compiled_query() -> None:
    calls: list[str] = []

    def counting(term: str) -> str:
        calls.append(term)
        return NS + term

    predicate = compile_q("speed>1;speed<100|speed==5;rpm").compile(counting)
    for _ in range(10):
        predicate(CAR)
    assert sorted(calls) == ["rpm", "speed"]


def test_malformed_entities_never_raise() -> None:
    odd = {"id": "x", NS + "speed": [None, {"type": "Property"}, "junk", {"type": "Relationship"}]}
    for q in ("speed>1", "speed==1", "speed!=1", "speed~=a", "speed.x", "speed[a]==1", "!speed"):
        match(q, odd)


# ----------------------------------------------------------------------------- properties

_names = st.sampled_from(["a", "b", "temp", "é1", "x_y"])
_paths = st.builds(
    ValuePath,
    st.tuples(_names) | st.tuples(_names, _names) | st.tuples(_names, st.sampled_from(["observedAt", "unitCode"])),
) | st.builds(ValuePath, st.tuples(_names), st.tuples(st.sampled_from(["k", "en", "*", "a-b"])))
_numbers = st.builds(Number, st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False))
_strings = st.builds(String, st.text(max_size=8))
_temporals = st.sampled_from(
    [Temporal("dateTime", "2024-01-01T00:00:00Z"), Temporal("date", "2024-02-29"), Temporal("time", "23:59:59.5Z")]
)
_comparable = _numbers | _strings | _temporals
_scalars = _comparable | st.builds(Boolean, st.booleans()) | st.sampled_from([Uri("urn:x:1"), Uri("http://e.org/a?b=c")])
_equality_values = (
    _scalars
    | st.builds(lambda lo, hi: Range(lo, hi), _numbers, _numbers)
    | st.builds(lambda items: ValueList(tuple(items)), st.lists(_scalars, min_size=2, max_size=3))
)
_leaves = (
    st.builds(Exists, _paths)
    | st.builds(NotExists, _paths)
    | st.builds(Comparison, _paths, st.sampled_from(["==", "!="]), _equality_values)
    | st.builds(Comparison, _paths, st.sampled_from([">", ">=", "<", "<="]), _comparable)
    | st.builds(Pattern, _paths, st.sampled_from(["^a", "a|b", "x(y)z", "[;]", '"q"']), st.booleans())
)
_trees = st.recursive(
    _leaves,
    lambda kids: st.builds(lambda ts: And(tuple(ts)), st.lists(kids, min_size=2, max_size=3))
    | st.builds(lambda ts: Or(tuple(ts)), st.lists(kids, min_size=2, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_printed_ast_reparses_to_the_same_ast(tree: object) -> None:
    assert parse_q(to_text(tree)) == tree  # type: ignore[arg-type]


_simple_terms = st.sampled_from(["a", "!a", "a>0", "a<=2", "a==1", "a!=1", "b", "b==1..3", "b!=2", 'c=="x"', "c~=^x"])
_values = st.none() | st.integers(-2, 4) | st.sampled_from(["x", "xy", "y"])


@st.composite
def _entities(draw: st.DrawFn) -> dict[str, Any]:
    attrs = {}
    for name in ("a", "b", "c"):
        value = draw(_values)
        if value is not None:
            attrs[name] = prop(value)
    return entity(**attrs)


@settings(max_examples=300, deadline=None)
@given(_simple_terms, _simple_terms, _simple_terms, _entities())
def test_boolean_algebra_of_and_or(x: str, y: str, z: str, e: dict[str, Any]) -> None:
    vx, vy, vz = (match(t, e) for t in (x, y, z))
    assert match(f"{x};{y}", e) == (vx and vy)
    assert match(f"{x}|{y}", e) == (vx or vy)
    assert match(f"{x}|{y};{z}", e) == (vx or (vy and vz))  # ';' binds tighter
    assert match(f"({x}|{y});{z}", e) == match(f"({x};{z})|({y};{z})", e)  # distributivity
    assert match(f"{x};({y}|{z})", e) == match(f"{x};{y}|{x};{z}", e)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["a", "b"]), st.integers(-2, 4), _entities())
def test_unequal_is_existence_without_equality_for_single_instances(name: str, n: int, e: dict[str, Any]) -> None:
    assert match(f"{name}!={n}", e) == (match(name, e) and not match(f"{name}=={n}", e))
    assert match(f"!{name}", e) != match(name, e)
    assert match(f"{name}>={n}", e) == (match(f"{name}>{n}", e) or match(f"{name}=={n}", e))
