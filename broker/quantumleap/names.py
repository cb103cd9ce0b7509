"""Attribute and type names as QuantumLeap shows them, for a history that keeps IRIs.

QuantumLeap stores the names its notifications carry and matches them
case-insensitively (columns and tables are lowercased: sql_translator.py:
174-200 `_et2tn`/`_ea2cn`, 1080 `lower_attr_names`; src/utils/jsondict.py
`lookup_string_match`). The history here keeps expanded IRIs, so a name is
found again by compaction under the platform's default context (core + Smart
Data Models, the IoT agents' context): a term of that context first; an IRI
under the core context's @vocab (`.../default-context/no2`, what an NGSI-LD
client writes without a Link header) as the bare suffix `no2`, which is what
a broker's notification carries for it and so what QuantumLeap would have
stored; anything else as JSON-LD compaction gives it.

JSON-LD itself would show that vocab IRI as `ngsi-ld:default-context/no2`
under this context, because `no2` is a term of it for another IRI (see
models/context/document.py `compact_iri`); the NGSI-LD API keeps that. Here
both IRIs are shown as `no2` and both answer to it, as both would sit in one
`no2` column of QuantumLeap.
"""

from __future__ import annotations

from models.context import Context


class Names:
    """Show and match names under one resolved context; memoised per instance."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._shown: dict[str, str] = {}
        vocab = context.vocab
        self._vocab = vocab or ""

    def show(self, iri: str) -> str:
        """The short name QuantumLeap would hold for a stored IRI."""
        name = self._shown.get(iri)
        if name is None:
            name = self._show(iri)
            if len(self._shown) < 50_000:
                self._shown[iri] = name
        return name

    def _show(self, iri: str) -> str:
        compact = self.context.compact_iri(iri)
        if compact != iri and ":" not in compact:
            return compact  # a term, or a vocab suffix no term shadows
        if self._vocab and iri.startswith(self._vocab) and len(iri) > len(self._vocab):
            return iri[len(self._vocab):]
        return compact

    def matches(self, iri: str, name: str) -> bool:
        """Whether a stored IRI answers to a requested name (case-insensitive, or the full IRI)."""
        return iri == name or self.show(iri).lower() == name.lower() or iri == self.context.expand_term(name)
