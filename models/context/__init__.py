"""JSON-LD @context handling for NGSI-LD (ETSI GS CIM 009 V1.9.1, clauses 4.4, 5.5.5, 5.5.7, 5.13).

Terms in NGSI-LD payloads (attribute names, entity types, VocabProperty
values) are short names that the request's @context maps to IRIs. The
platform stores IRIs (see `models.vocabulary`) and gives short names back
with the context of each response's request:

    resolver = ContextResolver(cache_dir="data/contexts")
    context = resolver.resolve(["https://smartdatamodels.org/context.jsonld"])   # or await aresolve(...)
    context.expand_term("no2")          # 'https://smart-data-models.github.io/data-models/terms.jsonld#/definitions/no2'
    context.compact_iri(iri)            # 'no2'

- `Context` (document.py): an immutable resolved active context; the core
  context always applied last and protected, user @vocab honoured.
- `ContextResolver` (resolver.py): None, URL, object or list -> `Context`;
  remote documents fetched with timeout, size and redirect limits, cached in
  memory and on disk; the `/jsonldContexts` inventory (clause 5.13).
- core.py: the core context shipped with the platform, generated from Annex B
  by scripts/build_core_context.py; every versioned core URL maps to it.
- smart_data_models.py: the Smart Data Models contexts (Environment, Weather,
  Device, and the all-subjects one), written as term lists, never fetched.
"""

from models.context.core import (
    CORE_CONTEXT_URL,
    core_definitions,
    core_document,
    is_core_context_url,
)
from models.context.document import Context, TermDefinition, is_absolute_iri
from models.context.resolver import ACCEPTED_CONTENT_TYPES, ContextResolver, Fetch, HttpFetch
from models.context.smart_data_models import (
    DEVICE,
    ENVIRONMENT,
    SDM_ALL_CONTEXT_URL,
    SHIPPED_URLS,
    SUBJECTS,
    WEATHER,
    SubjectContext,
    all_subjects_document,
    smart_data_models_document,
)

__all__ = [
    "ACCEPTED_CONTENT_TYPES",
    "CORE_CONTEXT_URL",
    "DEVICE",
    "ENVIRONMENT",
    "SDM_ALL_CONTEXT_URL",
    "SHIPPED_URLS",
    "SUBJECTS",
    "WEATHER",
    "Context",
    "ContextResolver",
    "Fetch",
    "HttpFetch",
    "SubjectContext",
    "TermDefinition",
    "all_subjects_document",
    "core_definitions",
    "core_document",
    "is_absolute_iri",
    "is_core_context_url",
    "smart_data_models_document",
]
