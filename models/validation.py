"""Checks of the NGSI-LD lexical rules: URIs, names, date-times, language tags.

Each check raises the most specific error of models.errors with a message
naming the offending member, so the API can answer with a precise
ProblemDetails instead of a generic 400.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import TypeGuard

from models.errors import BadRequestData, InvalidUri

# RFC 3986 absolute URI: a scheme, a colon, then something without spaces or the
# characters RFC 3986 excludes everywhere. Entity ids such as urn:ngsi-ld:T:1 pass.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")

# Clause 4.6.2: name = unicodeLetter *(unicodeLetter / unicodeNumber / "_"),
# optionally prefixed "prefix:name". Python's \w is letters, digits and "_";
# the first character must be a letter, so digits and "_" are excluded there.
_NAME = re.compile(r"^[^\W\d_]\w*(?::[^\W\d_]\w*)?$")

_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_LANGUAGE_TAG = re.compile(r"^(@none|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$")


def is_uri(value: object) -> TypeGuard[str]:
    """Whether value is an absolute URI (RFC 3986), as entity ids and objects must be."""
    return isinstance(value, str) and _URI.match(value) is not None


def check_uri(value: object, what: str) -> str:
    """Return value if it is an absolute URI, else raise InvalidUri naming `what`."""
    if not is_uri(value):
        raise InvalidUri(f"{what} must be a URI, got {value!r}")
    return value


@lru_cache(maxsize=65536)
def is_name(value: str) -> bool:
    """Whether value is a valid entity type, attribute name or a full IRI standing for one."""
    return _NAME.match(value) is not None or _URI.match(value) is not None


def check_name(value: object, what: str) -> str:
    """Return value if it is a valid NGSI-LD name (clause 4.6.2) or IRI, else BadRequestData."""
    if not isinstance(value, str) or not is_name(value):
        raise BadRequestData(f"{what} {value!r} is not a valid NGSI-LD name (clause 4.6.2)")
    return value


def parse_datetime(value: object, what: str) -> datetime:
    """Parse an ISO 8601 date-time (clause 4.8); naive values are taken as UTC."""
    if not isinstance(value, str) or not _DATETIME.match(value):
        raise BadRequestData(f"{what} must be an ISO 8601 date-time, got {value!r}")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRequestData(f"{what} is not a valid date-time: {value!r} ({exc})") from exc


def check_datetime(value: object, what: str) -> str:
    """Return value if it is an ISO 8601 date-time string, else BadRequestData."""
    if not isinstance(value, str):
        raise BadRequestData(f"{what} must be an ISO 8601 date-time, got {value!r}")
    if not is_datetime(value):
        parse_datetime(value, what)  # raises with the member named
    return value


@lru_cache(maxsize=16384)
def is_datetime(value: str) -> bool:
    """Whether a string is an ISO 8601 date-time `check_datetime` accepts (memoised)."""
    # Measures of one batch share their timestamps: validating each distinct
    # string once took date-time checks off the write path's profile.
    try:
        parse_datetime(value, "")
    except BadRequestData:
        return False
    return True


def check_language_map(value: object, what: str) -> dict[str, object]:
    """A languageMap: language tags (BCP 47, or @none) to a string or an array of strings."""
    if not isinstance(value, dict) or not value:
        raise BadRequestData(f"{what}: languageMap must be a non-empty JSON object")
    for tag, text in value.items():
        if not _LANGUAGE_TAG.match(tag):
            raise BadRequestData(f"{what}: {tag!r} is not a language tag")
        if isinstance(text, list):
            if not all(isinstance(t, str) for t in text):
                raise BadRequestData(f"{what}: languageMap[{tag!r}] must hold strings")
        elif not isinstance(text, str):
            raise BadRequestData(f"{what}: languageMap[{tag!r}] must be a string")
    return value
