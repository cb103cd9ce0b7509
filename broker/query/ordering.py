"""The NGSI-LD Entity Ordering Language, the `orderBy` parameter (ETSI GS CIM 009 V1.9.1, clause 4.23).

    OrderingTerm  = AttrPath *1(";" direction) *("," OrderingTerm)
    direction     = "asc" / "desc" / "dist-asc" / "dist-desc"
    AttrPath      = id / type / scope / createdAt / modifiedAt
                  / AttrName *("." AttrName) *1("[" AttrName *("." AttrName) "]")

`name` orders by the value of the attribute (a Relationship's object),
`name.observedAt` by one of its members, `name.sub` by the value of a
sub-attribute, `name[city]` by an item of a compound value. The terms apply
in turn, each breaking the ties of the ones before; entities still tied
keep id order, so both stores give the same array.

Values compare by the datatype order of clause 4.23.2 (numbers, strings,
objects, arrays, booleans, times, dates, date-times, then nulls), and an
entity without the attribute comes last whichever the direction. Strings
compare in an approximation of the ICU root collation (clause 4.23.1):
letters first without accents and case, then accents, then lowercase
before uppercase; only the root collation is offered (`collation`
naming another one is OperationNotSupported). dist-asc/dist-desc order by
the haversine distance from `orderFrom` (a geometry of type
`orderGeometry`, Point by default) to the entity's GeoProperty; entities
without one follow, by value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import orjson

from broker.query.geo import distance
from models.errors import BadRequestData, InvalidQuery, OperationNotSupported
from models.geojson import geometry_from_query
from models.vocabulary import ATTRIBUTE_CORE, GEO_PROPERTY, NGSI_LD_NULL, RELATIONSHIP, VALUE_MEMBER

if TYPE_CHECKING:  # the stores use broker.query (q and geo to SQL); the entities sorted here are only typed
    from broker.store.base import StoredEntity

__all__ = ["OrderTerm", "Ordering", "parse_order_by"]

DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
_NAME = r"[^\W\d_]\w*"
_TERM = re.compile(rf"({_NAME}(?:\.{_NAME})*)(?:\[({_NAME}(?:\.{_NAME})*)\])?(?:;([a-z-]+))?$")
_ROOT_COLLATIONS = frozenset({"und", "und-x-icu", "root"})
_COLLATION = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_ENTITY_DATES = ("createdAt", "modifiedAt")
_DATETIME_MEMBERS = frozenset({"observedAt", "createdAt", "modifiedAt", "deletedAt", "expiresAt"})

# clause 4.23.2: the rank of each datatype
NUMBER, STRING, OBJECT, ARRAY, BOOLEAN, TIME, DATE, DATETIME, NULL = range(9)


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One ordering term: the attribute path, an optional trailing path into the value, and the direction."""

    path: tuple[str, ...]
    value_path: tuple[str, ...] = ()
    direction: str = "asc"


def parse_order_by(text: str) -> tuple[OrderTerm, ...]:
    """Parse an orderBy value (URL-decoded); InvalidQuery (BadRequestData) naming the faulty term."""
    terms = []
    for part in text.split(","):
        m = _TERM.match(part.strip())
        if m is None:
            raise InvalidQuery(f"orderBy term {part!r} is not AttrName[.AttrName...][;asc|desc|dist-asc|dist-desc]")
        direction = m.group(3) or "asc"
        if direction not in DIRECTIONS:
            raise InvalidQuery(f"orderBy direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
        terms.append(OrderTerm(tuple(m.group(1).split(".")), tuple(m.group(2).split(".")) if m.group(2) else (),
                               direction))
    return tuple(terms)


def collation_key(text: str) -> tuple[str, str, str]:
    """A sort key approximating the ICU root collation: base letters, then accents, then lowercase first."""
    decomposed = unicodedata.normalize("NFD", text)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return base.casefold(), decomposed.casefold(), text.swapcase()


def _typed(value: Any, dated: bool) -> tuple[int, Any]:
    """(datatype rank, comparable) of a JSON value, clause 4.23.2."""
    if value is None or value == NGSI_LD_NULL:
        return NULL, 0
    if isinstance(value, bool):
        return BOOLEAN, value
    if isinstance(value, int | float):
        return NUMBER, value
    if isinstance(value, str):
        if dated:
            moment = _moment(value, "DateTime")
            if moment is not None:
                return moment
        return STRING, collation_key(value)
    if isinstance(value, dict):
        kind = value.get("@type")
        if kind in ("DateTime", "Date", "Time") and isinstance(value.get("@value"), str):
            moment = _moment(value["@value"], kind)
            if moment is not None:
                return moment
        return OBJECT, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if isinstance(value, list):
        return ARRAY, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return OBJECT, orjson.dumps(value)


def _moment(text: str, kind: str) -> tuple[int, Any] | None:
    try:
        if kind == "Date":
            return DATE, date.fromisoformat(text)
        if kind == "Time":
            return TIME, time.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text)
        return DATETIME, (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        return None


def _instance(doc: dict[str, Any], iri: str) -> Any:
    """The instance ordering looks at: the default instance, else the first."""
    instances = doc.get(iri)
    if not isinstance(instances, list) or not instances:
        return None
    return next((i for i in instances if isinstance(i, dict) and "datasetId" not in i), instances[0])


@dataclass(frozen=True)
class Ordering:
    """A parsed orderBy with what distance terms need; `sort` applies it to a page-less result."""

    terms: tuple[OrderTerm, ...]
    reference: dict[str, Any] | None = None

    @classmethod
    def from_params(cls, order_by: str, order_from: str | None, order_geometry: str | None,
                    collation: str | None) -> Ordering:
        """Validate orderBy, orderFrom, orderGeometry and collation (clause 5.7.2.4)."""
        if collation:
            if not _COLLATION.match(collation):
                raise BadRequestData(f"collation {collation!r} is not an ICU collation (RFC 6067)")
            if collation.lower() not in _ROOT_COLLATIONS:
                raise OperationNotSupported(f"only the root collation is supported, not {collation!r}")
        terms = parse_order_by(order_by)
        reference = None
        if any(t.direction.startswith("dist-") for t in terms):
            if not order_from:
                raise BadRequestData("orderBy by distance needs orderFrom, the reference location")
            reference = geometry_from_query(order_geometry or "Point", order_from)
        elif order_from or order_geometry:
            raise BadRequestData("orderFrom and orderGeometry are only used by dist-asc and dist-desc")
        return cls(terms, reference)

    def sort(self, entities: Sequence[StoredEntity], expand: Callable[[str], str]) -> list[StoredEntity]:
        """`entities` (in id order) in this ordering; stable, so ties keep id order."""
        out = list(entities)
        for term in reversed(self.terms):
            key = self._key(term, expand)
            keyed = [(key(e), e) for e in out]
            present = [(k, e) for k, e in keyed if k is not None]
            missing = [e for k, e in keyed if k is None]
            present.sort(key=lambda pair: pair[0], reverse=term.direction in ("desc", "dist-desc"))
            out = [e for _, e in present] + missing
        return out

    def _key(self, term: OrderTerm, expand: Callable[[str], str]) -> Callable[[StoredEntity], Any]:
        head, rest = term.path[0], term.path[1:]
        if not rest and not term.value_path and head in ("id", "type", "scope", *_ENTITY_DATES):
            return _member_key(head)
        iri = expand(head)
        subs = tuple(m if m in ATTRIBUTE_CORE else expand(m) for m in rest)
        reference = self.reference
        by_distance = term.direction.startswith("dist-") and reference is not None

        def key(entity: StoredEntity) -> Any:
            inst = _instance(entity.doc, iri)
            if inst is None:
                return None
            if by_distance and reference is not None and not subs and inst.get("type") == GEO_PROPERTY:
                try:
                    return (0, distance(reference, inst["value"]))
                except (KeyError, TypeError, ValueError):
                    return None
            value, dated = _attribute_value(inst, subs)
            for item in term.value_path:
                value = value.get(item) if isinstance(value, dict) else None
            if value is None and (subs or term.value_path):
                return None
            return (1, *_typed(value, dated)) if by_distance else _typed(value, dated)

        return key


def _attribute_value(inst: dict[str, Any], subs: tuple[str, ...]) -> tuple[Any, bool]:
    """The value a path names inside an attribute instance, and whether it is a date-time member."""
    node: Any = inst
    for sub in subs:
        if not isinstance(node, dict):
            return None, False
        if sub in _DATETIME_MEMBERS:
            return node.get(sub), True
        child = node.get(sub)
        if isinstance(child, list):
            child = child[0] if child else None
        node = child
    if not isinstance(node, dict):
        return node, False
    member = VALUE_MEMBER.get(node.get("type", ""), "value")
    if node.get("type") == RELATIONSHIP:
        member = "object"
    return node.get(member), False


def _member_key(member: str) -> Callable[[StoredEntity], Any]:
    if member == "id":
        return lambda e: (STRING, collation_key(e.doc["id"]))
    if member == "type":
        return lambda e: (STRING, tuple(sorted(collation_key(t) for t in e.doc.get("type", ()))))
    if member == "scope":
        return lambda e: (STRING, tuple(sorted(collation_key(s) for s in e.doc["scope"]))) if e.doc.get("scope") else None
    if member == "createdAt":
        return lambda e: _typed(e.created_at, True)
    return lambda e: _typed(e.modified_at, True)
