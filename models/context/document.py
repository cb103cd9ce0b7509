"""`Context`: a resolved, immutable JSON-LD active context, and how local contexts build one.

Only the part of JSON-LD 1.1 context processing that NGSI-LD needs is
implemented (clauses 4.4 and 5.5.7): term definitions (string or object with
@id, @type, @container, @prefix, @protected), @vocab, compact IRIs and
absolute IRIs. User contexts must not contain scoped contexts (a term
definition with its own @context): that is `BadRequestData` (clause 5.5.7).

Precedence, as clause 4.4 asks ("the Core @context ... as if it were in the
last position ... protected"):

- every term the core context defines keeps its core definition; a user
  context redefining it is ignored, not rejected (the JSON-LD 1.1 rule would
  be an error unless identical). Brokers in the field ignore it too, and the
  Smart Data Models all-subjects context, the IoT agents' default, redefines
  `properties` and `objects` differently: rejecting it would reject most
  FIWARE traffic. The ignored names are kept in `Context.ignored_terms`.
- the core prefixes (`ngsi-ld`, `geojson`) are usable inside user contexts,
  since the core context is "implicitly present".
- @vocab is not a term and is not protected: a user @vocab wins over the
  core's default-context vocabulary, which clause 4.4 calls a fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from models.errors import BadRequestData

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_GEN_DELIMS = frozenset(":/?#[]@")
_IGNORED_KEYWORDS = frozenset({"@version", "@vocab", "@protected", "@base", "@language", "@direction", "@propagate"})
_MEMO_LIMIT = 50_000  # names per Context before the memo is reset: bounds memory under hostile input


class TermDefinition(NamedTuple):
    """One term of an active context."""

    iri: str
    type: str | None = None
    container: Any = None
    prefix: bool = False
    protected: bool = False


def is_absolute_iri(value: str) -> bool:
    """True when `value` starts with a URI scheme (`https:`, `urn:` ...)."""
    return _SCHEME.match(value) is not None


class _Definer:
    """Applies one local context (a JSON object) to an active context, in place."""

    def __init__(
        self,
        local: Mapping[str, Any],
        active: dict[str, TermDefinition],
        vocab: str | None,
        *,
        fixed: frozenset[str],
        ignored: set[str],
        allow_scoped: bool,
    ) -> None:
        self.local = local
        self.active = active
        self.vocab = vocab
        self.fixed = fixed
        self.ignored = ignored
        self.allow_scoped = allow_scoped
        self.defined: dict[str, bool] = {}
        self.protected = bool(local.get("@protected", False))

    def run(self) -> str | None:
        if "@import" in self.local:
            raise BadRequestData("@import in a user @context is not supported")
        if "@vocab" in self.local:
            self.vocab = self._vocab_mapping(self.local["@vocab"])
        for term in self.local:
            if not term.startswith("@"):
                self.define(term)
        return self.vocab

    def _vocab_mapping(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise BadRequestData(f"invalid @vocab mapping {value!r}: must be a string or null")
        if value == "":
            return self.vocab
        expanded = self.expand_iri(value)
        if not is_absolute_iri(expanded):
            raise BadRequestData(f"invalid @vocab mapping {value!r}: not an IRI")
        return expanded

    def define(self, term: str) -> None:
        state = self.defined.get(term)
        if state is True:
            return
        if state is False:
            raise BadRequestData(f"cyclic IRI mapping in @context at term {term!r}")
        if term in self.fixed:
            # Protected core term: the core definition stays (module docstring).
            self.defined[term] = True
            self.ignored.add(term)
            return
        self.defined[term] = False
        value = self.local[term]
        if isinstance(value, str):
            value, simple = {"@id": value}, True
        elif isinstance(value, Mapping):
            simple = False
        elif value is None:
            # An explicitly undefined term falls back to @vocab like any unknown name.
            self.active.pop(term, None)
            self.defined[term] = True
            return
        else:
            raise BadRequestData(f"invalid definition of term {term!r} in @context: {value!r}")
        if "@context" in value and not self.allow_scoped:
            raise BadRequestData(f"term {term!r}: scoped contexts are not allowed in a user @context (clause 5.5.7)")
        if "@reverse" in value:
            raise BadRequestData(f"term {term!r}: @reverse is not supported in NGSI-LD")
        self.active[term] = self._definition(term, value, simple)
        self.defined[term] = True

    def _definition(self, term: str, value: Mapping[str, Any], simple: bool) -> TermDefinition:
        id_value = value.get("@id", term)
        if id_value is not None and not isinstance(id_value, str):
            raise BadRequestData(f"term {term!r}: @id must be a string")
        if id_value is None or id_value == term:
            if ":" in term:
                iri = self.expand_iri(term)
            elif self.vocab is not None:
                iri = self.vocab + term
            else:
                raise BadRequestData(f"term {term!r} has no IRI and there is no @vocab")
        elif id_value.startswith("@"):
            iri = id_value
        else:
            iri = self.expand_iri(id_value)
        type_value = value.get("@type")
        if type_value is not None:
            if not isinstance(type_value, str):
                raise BadRequestData(f"term {term!r}: @type must be a string")
            if not type_value.startswith("@"):
                type_value = self.expand_iri(type_value)
        prefix = value.get("@prefix")
        if prefix is None:
            # JSON-LD 1.1 API, Create Term Definition step 14.2.5: only a simple term without ':'
            # or '/' whose IRI ends with a gen-delim serves as a prefix
            prefix = (simple and ":" not in term and "/" not in term and not iri.startswith("@")
                      and iri[-1:] in _GEN_DELIMS)
        return TermDefinition(
            iri=iri,
            type=type_value,
            container=value.get("@container"),
            prefix=bool(prefix),
            protected=bool(value.get("@protected", self.protected)),
        )

    def expand_iri(self, value: str) -> str:
        """IRI expansion (vocab-relative) of a value met inside this local context."""
        if value.startswith("@"):
            return value
        if value in self.local:
            self.define(value)
        known = self.active.get(value)
        if known is not None:
            return known.iri
        if ":" in value:
            prefix, suffix = value.split(":", 1)
            if prefix == "_" or suffix.startswith("//"):
                return value
            if prefix in self.local:
                self.define(prefix)
            definition = self.active.get(prefix)
            if definition is not None and definition.prefix:
                return definition.iri + suffix
            return value
        if self.vocab is not None:
            return self.vocab + value
        raise BadRequestData(f"cannot expand {value!r} to an IRI: no such term and no @vocab")


def apply_local_context(
    local: Mapping[str, Any],
    active: dict[str, TermDefinition],
    vocab: str | None,
    *,
    fixed: frozenset[str] = frozenset(),
    ignored: set[str] | None = None,
    allow_scoped: bool = False,
) -> str | None:
    """Apply one local context object to `active` (in place) and return the new @vocab.

    `fixed` names protected terms that keep their definition; attempts to
    redefine them are added to `ignored`.
    """
    if not isinstance(local, Mapping):
        raise BadRequestData(f"a @context entry must be an object or a URL, not {type(local).__name__}")
    definer = _Definer(local, active, vocab, fixed=fixed, ignored=set() if ignored is None else ignored,
                       allow_scoped=allow_scoped)
    return definer.run()


class Context:
    """An immutable resolved active context: core terms protected, user terms, @vocab.

    Built by `ContextResolver.resolve`; `expand_term` and `compact_iri` are
    memoised per instance because the broker asks the same few names again
    and again.
    """

    __slots__ = (
        "_compacted",
        "_expanded",
        "_ignored",
        "_inverse",
        "_prefixes",
        "_source",
        "_terms",
        "_urls",
        "_user_terms",
        "_vocab",
    )

    def __init__(
        self,
        terms: Mapping[str, TermDefinition],
        vocab: str | None,
        *,
        source: Any = None,
        urls: Sequence[str] = (),
        user_terms: Iterable[str] = (),
        ignored_terms: Iterable[str] = (),
    ) -> None:
        self._terms: Mapping[str, TermDefinition] = MappingProxyType(dict(terms))
        self._vocab = vocab
        self._source = source
        self._urls = tuple(urls)
        self._user_terms = frozenset(user_terms)
        self._ignored = frozenset(ignored_terms)
        self._expanded: dict[str, str] = {}
        self._compacted: dict[str, str] = {}
        self._inverse = self._build_inverse()
        self._prefixes = tuple(
            sorted(((name, d.iri) for name, d in self._terms.items() if d.prefix), key=lambda p: (len(p[0]), p[0]))
        )

    def _build_inverse(self) -> dict[str, str]:
        # Preference: a user term over a core term, then the shortest, then the first in code-point order.
        def rank(term: str) -> tuple[int, int, str]:
            return (0 if term in self._user_terms else 1, len(term), term)

        inverse: dict[str, str] = {}
        for term in sorted(self._terms, key=rank):
            inverse.setdefault(self._terms[term].iri, term)
        return inverse

    @property
    def source(self) -> Any:
        """The @context value exactly as the client gave it (None: core only)."""
        return self._source

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs the @context value names at its top level, in order."""
        return self._urls

    @property
    def vocab(self) -> str | None:
        """The @vocab in force (the core default-context vocabulary unless a user context sets one)."""
        return self._vocab

    @property
    def terms(self) -> Mapping[str, TermDefinition]:
        """Every defined term (read-only)."""
        return self._terms

    @property
    def ignored_terms(self) -> frozenset[str]:
        """Core terms a user context tried to redefine (kept with their core definition)."""
        return self._ignored

    def expand_term(self, term: str) -> str:
        """The IRI of an attribute name or entity type (vocab-relative IRI expansion)."""
        cached = self._expanded.get(term)
        if cached is not None:
            return cached
        expanded = self._expand(term)
        if len(self._expanded) >= _MEMO_LIMIT:
            self._expanded.clear()
        self._expanded[term] = expanded
        return expanded

    def _expand(self, term: str) -> str:
        definition = self._terms.get(term)
        if definition is not None:
            return definition.iri
        if term.startswith("@"):
            return term
        if ":" in term:
            prefix, suffix = term.split(":", 1)
            prefix_definition = self._terms.get(prefix)
            if prefix_definition is not None and prefix_definition.prefix and not suffix.startswith("//"):
                return prefix_definition.iri + suffix
            return term
        if self._vocab is not None:
            return self._vocab + term
        return term

    def compact_iri(self, iri: str) -> str:
        """The short name for an IRI: a term, else the @vocab-relative name, else a compact IRI, else the IRI.

        JSON-LD 1.1 IRI Compaction: the @vocab is tried before prefixes, so
        that an undefined name comes back unchanged rather than as
        `ngsi-ld:default-context/name`; but a vocab suffix that the context
        defines as a term for another IRI (`no2` under the Smart Data Models
        context, for `.../default-context/no2`) would read back as that other
        IRI, so the compact IRI is the answer then. Every candidate is checked
        to expand back to `iri`.
        """
        cached = self._compacted.get(iri)
        if cached is not None:
            return cached
        compacted = self._compact(iri)
        if len(self._compacted) >= _MEMO_LIMIT:
            self._compacted.clear()
        self._compacted[iri] = compacted
        return compacted

    def _compact(self, iri: str) -> str:
        term = self._inverse.get(iri)
        if term is not None:
            return term
        vocab = self._vocab
        if vocab is not None and iri.startswith(vocab) and len(iri) > len(vocab):
            suffix = iri[len(vocab):]
            if suffix not in self._terms and self._expand(suffix) == iri:
                return suffix
        # JSON-LD 1.1 API, IRI Compaction step 5: of the compact IRIs every prefix term gives,
        # the shortest, then the least in code-point order (not the one of the shortest prefix);
        # a candidate that is itself a term must be a term for this very IRI
        best: str | None = None
        for name, prefix_iri in self._prefixes:
            if iri.startswith(prefix_iri) and len(iri) > len(prefix_iri):
                candidate = f"{name}:{iri[len(prefix_iri):]}"
                defined = self._terms.get(candidate)
                shorter = best is None or (len(candidate), candidate) < (len(best), best)
                if shorter and (defined is None or defined.iri == iri) and self._expand(candidate) == iri:
                    best = candidate
        return iri if best is None else best

    def is_vocab_coerced(self, term: str) -> bool:
        """True when the term's values are IRIs expanded like terms (`"@type": "@vocab"`)."""
        definition = self._terms.get(term)
        return definition is not None and definition.type == "@vocab"

    def expand_value(self, term: str, value: Any) -> Any:
        """A value of `term` with its strings expanded if the term is vocab-coerced, else unchanged."""
        if not self.is_vocab_coerced(term):
            return value
        if isinstance(value, str):
            return self.expand_term(value)
        if isinstance(value, list):
            return [self.expand_term(v) if isinstance(v, str) else v for v in value]
        return value

    def compact_value(self, term: str, value: Any) -> Any:
        """The inverse of `expand_value`: IRIs of a vocab-coerced term compacted."""
        if not self.is_vocab_coerced(term):
            return value
        if isinstance(value, str):
            return self.compact_iri(value)
        if isinstance(value, list):
            return [self.compact_iri(v) if isinstance(v, str) else v for v in value]
        return value

    def __repr__(self) -> str:
        return f"Context(source={self._source!r}, terms={len(self._terms)}, vocab={self._vocab!r})"
