"""A forwarded request in the terms of a registration's `jsonldContext` (clause 4.3.6.6), and its answer back.

When a registration's contextSourceInfo holds `jsonldContext`, the request
is compacted with that @context before it goes to the source: the names in
its query parameters (type, attrs, pick, omit, the attribute paths of q) and
in its payload (attribute names, entity types, the name lists of Query and
discovery payloads) are expanded with the client's @context and compacted
with the registration's; the payload loses its @context, goes as
application/json and the registration's @context goes in Link. What the
source answers is read with that @context and brought back to the client's
terms the same way, so that the callers merge it as any other answer.

Values are left alone (`value`, `object`, ...), as are ids, datasetIds and
times; core terms map to themselves, as both contexts hold the core one.
"""

from __future__ import annotations

import re
from typing import Any

from models.context import Context

_VALUES = frozenset({"@context", "id", "value", "object", "values", "objects", "languageMap", "languageMaps", "json",
                     "jsons", "valueList", "valueLists", "objectList", "objectLists", "vocab", "vocabs",
                     "coordinates", "geometry", "datasetId", "instanceId", "observedAt", "createdAt", "modifiedAt",
                     "deletedAt", "unitCode", "q", "scopeQ", "csf", "idPattern", "endpoint", "uri"})
_NAMES = frozenset({"type", "attrs", "typeList", "attributeList", "attributeNames", "typeNames", "typeName",
                    "attributeName", "watchedAttributes", "attributes", "propertyNames", "relationshipNames", "pick",
                    "omit"})
_LIST_PARAMS = ("type", "attrs", "pick", "omit", "geoproperty")
_NAME = re.compile(r"[^\s,;|(){}\[\]]+")
_Q_PATH = re.compile(r"(^|[;|(])(\s*!?)([^\s=!<>~;|()\[.]+)")


class Recontext:
    """Names from one @context to another (both resolved)."""

    def __init__(self, source: Context, target: Context) -> None:
        self.source, self.target = source, target

    def term(self, name: str) -> str:
        """One attribute name or entity type."""
        return self.target.compact_iri(self.source.expand_term(name))

    def _names(self, text: str) -> str:
        return _NAME.sub(lambda m: self.term(m.group(0)), text)

    def _q(self, text: str) -> str:
        return _Q_PATH.sub(lambda m: m.group(1) + m.group(2) + self.term(m.group(3)), text)

    def params(self, params: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
        """URL parameters: the lists of names and the attribute paths of q."""
        if params is None:
            return None
        out = []
        for key, value in params:
            if key in _LIST_PARAMS:
                value = self._names(value)
            elif key == "q":
                value = self._q(value)
            out.append((key, value))
        return out

    def payload(self, body: Any) -> Any:
        """A JSON payload (entity, fragment, Query, discovery answer, arrays of those), @context removed."""
        if isinstance(body, list):
            return [self.payload(item) for item in body]
        if not isinstance(body, dict):
            return body
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "@context":
                continue
            if key in _VALUES:
                out[key] = self._q(value) if key == "q" and isinstance(value, str) else value
            elif key in _NAMES:
                out[key] = self._name_value(value)
            else:
                out[self.term(key)] = self.payload(value)
        return out

    def _name_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._names(value)
        if isinstance(value, list):
            return [self._names(v) if isinstance(v, str) else self.payload(v) for v in value]
        return self.payload(value)

    def back(self) -> Recontext:
        """The other way: the source's terms to the client's."""
        return Recontext(self.target, self.source)
