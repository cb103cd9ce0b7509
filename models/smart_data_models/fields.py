"""Value types of the Smart Data Models, as their JSON Schemas (draft 2020-12) define them.

Every check raises a `PydanticCustomError` whose type is the JSON Schema
keyword that the official schema would report (`type`, `minimum`, `maximum`,
`enum`, `format`, `pattern`, `minItems`, `oneOf`, `anyOf`, ...), so a
violation found here names the same rule as a JSON Schema validator would.
Nested objects (GeoJSON, address, ...) are checked by plain functions that
keep the value verbatim and report the path inside it in the error context
(`ctx["path"]`): an entity written by a vendor is read back unchanged.

Where the JSON Schema semantics differ from Python's, the schema wins:
`integer` accepts 3.0 (an integer-valued number), `number` refuses booleans,
`date-time` is RFC 3339 (a time zone is required), `uri` is RFC 3986.
"""

from __future__ import annotations

import calendar
import ipaddress
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

Path = list[str | int]


def fail(keyword: str, message: str, path: Sequence[str | int] = ()) -> PydanticCustomError:
    """The error of one JSON Schema keyword, with the path inside the value."""
    return PydanticCustomError(keyword, message, {"path": list(path)})


# --- primitive JSON types -------------------------------------------------------------


def is_number(v: object) -> bool:
    """JSON Schema `number`: an int or float, never a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_integer(v: object) -> bool:
    """JSON Schema `integer`: a number with no fractional part (3.0 is one)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v.is_integer()


def _number_check(minimum: float | None, maximum: float | None, integer: bool) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if integer and not is_integer(v):
            raise fail("type", f"{v!r} is not an integer")
        if not is_number(v):
            raise fail("type", f"{v!r} is not a number")
        if minimum is not None and v < minimum:
            raise fail("minimum", f"{v!r} is less than the minimum of {minimum:g}")
        if maximum is not None and v > maximum:
            raise fail("maximum", f"{v!r} is greater than the maximum of {maximum:g}")
        return v

    return check


def _raw(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Rule(GroupedMetadata):
    """The check of one value type as `Annotated` metadata: a field is declared `Annotated[Any, number(minimum=0)]`.

    Pydantic expands it into the two validators every value type here has: the value is kept as given
    (no coercion), then `check` raises the JSON Schema keyword's error or returns it. A rule built by a
    call sits in the metadata, where a type checker accepts any expression, not in the type itself.
    """

    check: Callable[[Any], Any]

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(_raw)
        yield AfterValidator(self.check)


def number(minimum: float | None = None, maximum: float | None = None) -> Rule:
    """A JSON number with optional inclusive bounds, kept as given (int or float)."""
    return Rule(_number_check(minimum, maximum, False))


def integer(minimum: float | None = None, maximum: float | None = None) -> Rule:
    """A JSON integer (3.0 included, as JSON Schema counts it) with optional bounds."""
    return Rule(_number_check(minimum, maximum, True))


def _boolean(v: Any) -> Any:
    if not isinstance(v, bool):
        raise fail("type", f"{v!r} is not a boolean")
    return v


Number = Annotated[Any, number()]
Boolean = Annotated[Any, Rule(_boolean)]


def json_schema_rule(error_type: str) -> str:
    """The JSON Schema keyword of a pydantic error type (ours already are keywords)."""
    if error_type == "missing":
        return "required"
    if error_type.endswith("_type"):
        return "type"
    return error_type


def text(min_length: int | None = None) -> Rule:
    """A JSON string, optionally of at least `min_length` characters."""

    def check(v: Any) -> Any:
        _string(v, [])
        if min_length is not None and len(v) < min_length:
            raise fail("minLength", f"{v!r} is shorter than {min_length} characters")
        return v

    return Rule(check)


Text = Annotated[Any, text()]


def text_enum(*values: str) -> Rule:
    """A string among `values` (JSON Schema `enum`)."""

    def check(v: Any) -> Any:
        if v not in values:
            raise fail("enum", f"{v!r} is not one of {list(values)}")
        return v

    return Rule(check)


# --- formats --------------------------------------------------------------------------

# RFC 3339 section 5.6 date-time, as the format checker of JSON Schema reads it
# (case-insensitive "T" and "Z"; a time zone is required; no leap seconds).
_RFC3339 = re.compile(
    r"^(\d{4})-(0[1-9]|1[0-2])-(\d{2})T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$",
    re.ASCII,
)


def is_rfc3339(v: str) -> bool:
    """Whether v is an RFC 3339 date-time (JSON Schema `format: date-time`)."""
    m = _RFC3339.match(v.upper())
    if m is None:
        return False
    year, month, day = (int(g) for g in m.groups())
    return year > 0 and 1 <= day <= calendar.monthrange(year, month)[1]


# RFC 3986 appendix A, transcribed: URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ].
_UNRESERVED_SUB = r"a-zA-Z0-9_.~\-!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED_SUB}:@]|{_PCT})"
_QUERY = rf"(?:[{_UNRESERVED_SUB}:@/?]|{_PCT})*"
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_AUTHORITY = (
    rf"(?:(?:[{_UNRESERVED_SUB}:]|{_PCT})*@)?"
    rf"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|\[v[0-9A-Fa-f]+\.[{_UNRESERVED_SUB}:]+\]"
    rf"|(?:{_DEC_OCTET}\.){{3}}{_DEC_OCTET}|(?:[{_UNRESERVED_SUB}]|{_PCT})*)"
    r"(?::[0-9]*)?"
)
_URI = re.compile(
    rf"^[a-zA-Z][a-zA-Z0-9+.-]*:"
    rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?|{_PCHAR}+(?:/{_PCHAR}*)*|)"
    rf"(?:\?{_QUERY})?(?:\#{_QUERY})?$"
)


def is_uri(v: str) -> bool:
    """Whether v is an absolute URI by RFC 3986 (JSON Schema `format: uri`)."""
    m = _URI.match(v)
    if m is None:
        return False
    ip6 = m.group("ip6")
    if ip6 is not None:
        try:
            ipaddress.IPv6Address(ip6)
        except ValueError:
            return False
    return True


def is_ip_address(v: str) -> bool:
    """JSON Schema `format: ipv4` or `ipv6` (the standard library's reading of both)."""
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        try:
            cls(v)
        except ValueError:
            continue
        return True
    return False


def _string(v: Any, path: Path) -> str:
    if not isinstance(v, str):
        raise fail("type", f"{v!r} is not a string", path)
    return v


def _date_time(v: Any, path: Path = []) -> Any:  # noqa: B006 - never mutated
    _string(v, path)
    if not is_rfc3339(v):
        raise fail("format", f"{v!r} is not an RFC 3339 date-time (a time zone such as Z is required)", path)
    return v


def _uri(v: Any, path: Path = []) -> Any:  # noqa: B006
    _string(v, path)
    if not is_uri(v):
        raise fail("format", f"{v!r} is not an absolute URI (RFC 3986)", path)
    return v


DateTime = Annotated[Any, Rule(_date_time)]
Uri = Annotated[Any, Rule(_uri)]

# The common schema's EntityIdentifierType: a short identifier or a URI.
_IDENTIFIER = re.compile(r"^[\w\-\.\{\}\$\+\*\[\]`|~^@!,:\\]+$")


def is_entity_identifier(v: object) -> bool:
    """EntityIdentifierType of common-schema.json: 1-256 characters of the NGSI set, or a URI."""
    if not isinstance(v, str):
        return False
    if 1 <= len(v) <= 256 and _IDENTIFIER.search(v) is not None:
        return True
    return is_uri(v)


def _entity_id(v: Any, path: Path = []) -> Any:  # noqa: B006
    if not is_entity_identifier(v):
        raise fail("anyOf", f"{v!r} is neither an NGSI identifier (1-256 characters, no spaces) nor a URI", path)
    return v


EntityId = Annotated[Any, Rule(_entity_id)]


def array_of(item: Callable[[Any, Path], Any], min_items: int = 0) -> Callable[[Any], Any]:
    """A check of a JSON array whose items pass `item(value, path)`."""

    def check(v: Any) -> Any:
        if not isinstance(v, list):
            raise fail("type", f"{v!r} is not an array")
        if len(v) < min_items:
            raise fail("minItems", f"the array has {len(v)} items, at least {min_items} are required")
        for i, x in enumerate(v):
            item(x, [i])
        return v

    return check


def array(item: Callable[[Any, Path], Any], min_items: int = 0) -> Rule:
    """The rule of a JSON array of items checked by `item`."""
    return Rule(array_of(item, min_items))


def enum_item(*values: str) -> Callable[[Any, Path], Any]:
    """An item check: a string among `values`."""

    def check(v: Any, path: Path) -> Any:
        if v not in values:
            raise fail("enum", f"{v!r} is not one of {list(values)}", path)
        return v

    return check


def string_item(v: Any, path: Path) -> Any:
    """An item check: any string."""
    return _string(v, path)


entity_id_item = _entity_id
uri_item = _uri


def ip_item(v: Any, path: Path) -> Any:
    """An item of Device.ipAddress: a string that is an IPv4 or IPv6 address (exactly one)."""
    _string(v, path)
    if not is_ip_address(v):
        raise fail("oneOf", f"{v!r} is neither an IPv4 nor an IPv6 address", path)
    return v


def _see_also(v: Any) -> Any:
    # oneOf: a non-empty array of URIs, or one URI.
    if isinstance(v, list):
        if not v:
            raise fail("oneOf", "seeAlso is an empty array: one URI or a non-empty array of URIs is required")
        for i, x in enumerate(v):
            if not isinstance(x, str) or not is_uri(x):
                raise fail("oneOf", f"{x!r} is not an absolute URI (RFC 3986)", [i])
        return v
    if not isinstance(v, str) or not is_uri(v):
        raise fail("oneOf", f"{v!r} is neither a URI nor a non-empty array of URIs")
    return v


SeeAlso = Annotated[Any, Rule(_see_also)]


def object_with_strings(*names: str) -> Callable[[Any], Any]:
    """An object whose listed members, when present, are strings (other members are free)."""

    def check(v: Any) -> Any:
        if not isinstance(v, dict):
            raise fail("type", f"{v!r} is not an object")
        for name in names:
            if name in v:
                _string(v[name], [name])
        return v

    return check


def object_with_numbers(*names: str) -> Callable[[Any], Any]:
    """An object whose listed members, when present, are numbers (time series aggregations)."""

    def check(v: Any) -> Any:
        if not isinstance(v, dict):
            raise fail("type", f"{v!r} is not an object")
        for name in names:
            if name in v and not is_number(v[name]):
                raise fail("type", f"{v[name]!r} is not a number", [name])
        return v

    return check


ADDRESS_MEMBERS = (
    "streetAddress", "addressLocality", "addressRegion", "addressCountry", "postalCode",
    "postOfficeBoxNumber", "streetNr", "district",
)
Address = Annotated[Any, Rule(object_with_strings(*ADDRESS_MEMBERS))]
