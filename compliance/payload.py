"""`metropole check payload`: does a vendor's payload follow NGSI-LD and the Smart Data Models?

Input is a file, a folder (every *.json, *.jsonld, *.geojson inside, recursively)
or stdin; each holds one entity, an array of entities or an NGSI-LD
notification (`{"type": "Notification", "data": [...]}`), in any
representation (normalized, concise, keyValues). For each entity:

1. NGSI-LD syntax (models.normalize): a broker refuses what breaks it;
2. the Smart Data Model of its type (models.smart_data_models), whose rules
   agree with the official JSON Schemas: each violation with its JSON path,
   the JSON Schema keyword, the exact message and a plain-language explanation;
3. advice that the schemas cannot give (warnings): attributes the model
   does not define (with the likely intended name), a Relationship sent as
   a Property, a missing or foreign @context.

Violations make the entity invalid and the command exit non-zero; warnings
do so only with `strict=True`.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.context import SHIPPED_URLS
from models.errors import NgsiLdError
from models.representation import Representation
from models.smart_data_models import model_for, read_ngsi_ld
from models.smart_data_models.fields import json_schema_rule
from models.vocabulary import ENTITY_CORE

VIOLATION = "violation"
WARNING = "warning"
PAYLOAD_SUFFIXES = (".json", ".jsonld", ".geojson")

EXPLANATIONS: dict[str, str] = {
    "required": "The model requires this attribute and the entity does not have it.",
    "type": "The value is of the wrong kind, for example text where a number is expected.",
    "minimum": "The value is below the smallest value the model allows.",
    "maximum": "The value is above the largest value the model allows.",
    "enum": "Only a fixed list of values is allowed here, and this value is not in it.",
    "format": "The text does not follow the required format; a date-time must look like "
              "2026-11-26T07:00:00Z (with its time zone), an address like https://... or urn:...",
    "anyOf": "The value matches none of the forms the model allows here.",
    "oneOf": "The value matches none of the forms the model allows here (for a location: a GeoJSON "
             "Point, LineString, Polygon, MultiPoint, MultiLineString or MultiPolygon).",
    "minItems": "The list has fewer items than the model requires.",
    "minLength": "The text is shorter than the model allows.",
    "pattern": "The text does not have the required shape.",
    "ngsi-ld": "The entity breaks the NGSI-LD rules (ETSI GS CIM 009): a context broker will refuse it.",
    "ngsi-ld-geoproperty": "NGSI-LD requires `location` to be a GeoProperty; sent as a Property, "
                           "geographic queries will not find the entity.",
    "unknown-attribute": "The model does not define this attribute. The data is kept, but nobody "
                         "reading the model will look for it; check the spelling.",
    "relationship": "The specification describes this attribute as a link to another entity "
                    "(a Relationship); it was sent as an ordinary Property.",
    "context": "The @context tells what each attribute name means; without the model's context "
               "the names are not those of the Smart Data Model.",
    "unknown-model": "No Smart Data Model of this type is known here; only NGSI-LD syntax was checked.",
    "json": "The file is not valid JSON.",
}


@dataclass
class Finding:
    """One violation or warning: where, which rule, what exactly, and what it means."""

    severity: str
    path: str
    rule: str
    message: str
    explanation: str


@dataclass
class EntityResult:
    """The verdict on one entity."""

    source: str
    pointer: str
    id: str | None
    type: Any
    model: str | None
    representation: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == VIOLATION]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not self.violations


@dataclass
class PayloadReport:
    """Every entity checked, in input order."""

    entities: list[EntityResult]
    strict: bool = False

    def summary(self) -> dict[str, int]:
        """The headline figures."""
        return {
            "entities": len(self.entities),
            "valid": sum(e.valid for e in self.entities),
            "invalid": sum(not e.valid for e in self.entities),
            "violations": sum(len(e.violations) for e in self.entities),
            "warnings": sum(len(e.warnings) for e in self.entities),
        }

    @property
    def ok(self) -> bool:
        """No violation (and, when strict, no warning)."""
        return all(e.valid and not (self.strict and e.warnings) for e in self.entities) and bool(self.entities)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "payload",
            "summary": self.summary(),
            "ok": self.ok,
            "entities": [
                {**{k: v for k, v in asdict(e).items() if k != "findings"}, "valid": e.valid,
                 "violations": [asdict(f) for f in e.violations], "warnings": [asdict(f) for f in e.warnings]}
                for e in self.entities
            ],
        }


def _finding(severity: str, path: str, rule: str, message: str, explanation_rule: str | None = None) -> Finding:
    return Finding(severity, path, rule, message, EXPLANATIONS.get(explanation_rule or rule, ""))


def check_entity(doc: Any, source: str = "-", pointer: str = "$",
                 representation: Representation | None = None) -> EntityResult:
    """Check one entity (any representation) against NGSI-LD and its Smart Data Model."""
    if not isinstance(doc, dict):
        result = EntityResult(source, pointer, None, None, None, None)
        result.findings.append(_finding(VIOLATION, pointer, "ngsi-ld", "an entity must be a JSON object"))
        return result
    model = model_for(doc.get("type"))
    missing = [m for m in ("id", "type") if m not in doc]
    if missing:
        result = EntityResult(source, pointer, doc.get("id"), doc.get("type"), None, None)
        result.findings.append(_finding(VIOLATION, pointer, "ngsi-ld",
                                        f"not an NGSI-LD entity: it has no {' and no '.join(missing)}"))
        return result
    result = EntityResult(source, pointer, doc.get("id"), doc.get("type"), model.ENTITY_TYPE if model else None, None)
    try:
        read = read_ngsi_ld(doc, representation)
    except NgsiLdError as exc:
        result.findings.append(_finding(VIOLATION, pointer, "ngsi-ld", f"{exc.problem_type}: {exc.detail}"))
        return result
    result.representation = read.representation.value
    if model is None:
        result.findings.append(_finding(WARNING, f"{pointer}.type", "unknown-model",
                                        f"no Smart Data Model for type {doc.get('type')!r}"))
        return result
    try:
        model.model_validate(read.key_values)
    except ValidationError as exc:
        for error in exc.errors():
            attribute = str(error["loc"][0]) if error["loc"] else ""
            inner = (error.get("ctx") or {}).get("path", [])
            base = read.paths.get(attribute, f"$.{attribute}") if attribute else "$"
            path = pointer + base[1:] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
            rule = json_schema_rule(error["type"])
            message = error["msg"] if rule != "required" else f"{attribute!r} is a required attribute"
            result.findings.append(_finding(VIOLATION, path, rule, message))
    _advice(result, model, read, doc, pointer)
    return result


def _advice(result: EntityResult, model: Any, read: Any, doc: dict[str, Any], pointer: str) -> None:
    known = model.attribute_names()
    lowered = {a.lower(): a for a in known}
    for name in read.key_values:
        if name in known or name in ENTITY_CORE:
            continue
        guess = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.8)), None)
        hint = f"; did you mean {guess!r}?" if guess else ""
        result.findings.append(_finding(WARNING, f"{pointer}.{name}", "unknown-attribute",
                                        f"{name!r} is not an attribute of {model.ENTITY_TYPE}{hint}"))
    for name, written in read.attribute_types.items():
        if name in model.RELATIONSHIPS and written != "Relationship":
            result.findings.append(_finding(WARNING, f"{pointer}.{name}", "relationship",
                                            f"{name!r} is sent as a {written}, the model makes it a Relationship"))
        if name == "location" and written != "GeoProperty":
            result.findings.append(_finding(VIOLATION, f"{pointer}.location.type", "ngsi-ld",
                                            f"location is a {written}; NGSI-LD clause 4.7 requires a GeoProperty",
                                            "ngsi-ld-geoproperty"))
    context = doc.get("@context")
    urls = context if isinstance(context, list) else [context]
    if context is None:
        result.findings.append(_finding(WARNING, pointer, "context",
                                        "no @context in the entity: send the model's context in a Link header"))
    elif not any(isinstance(u, dict) or u in SHIPPED_URLS for u in urls):
        result.findings.append(_finding(WARNING, f"{pointer}.@context", "context",
                                        f"the @context names no Smart Data Models context (expected "
                                        f"{model.context_url()})"))


def entities_of(doc: Any) -> list[tuple[str, Any]]:
    """(JSON path, entity) for a document holding one entity, an array, or a notification."""
    if isinstance(doc, list):
        return [(f"$[{i}]", e) for i, e in enumerate(doc)]
    if isinstance(doc, dict) and doc.get("type") == "Notification" and isinstance(doc.get("data"), list):
        return [(f"$.data[{i}]", e) for i, e in enumerate(doc["data"])]
    return [("$", doc)]


def check_text(text: str, source: str, representation: Representation | None = None) -> list[EntityResult]:
    """Check every entity of one JSON or JSON-LD document."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        result = EntityResult(source, "$", None, None, None, None)
        result.findings.append(_finding(VIOLATION, "$", "json", f"line {exc.lineno} column {exc.colno}: {exc.msg}"))
        return [result]
    return [check_entity(e, source, p, representation) for p, e in entities_of(doc)]


def payload_files(target: Path) -> list[Path]:
    """The payload files of a file or folder argument."""
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in PAYLOAD_SUFFIXES)
    return [target]


def check_payloads(targets: Iterable[str], *, representation: Representation | None = None,
                   strict: bool = False, stdin: Any = None) -> PayloadReport:
    """Check files, folders and "-" (stdin)."""
    results: list[EntityResult] = []
    for target in targets:
        if target == "-":
            results += check_text((stdin or sys.stdin).read(), "<stdin>", representation)
            continue
        for path in payload_files(Path(target)):
            results += check_text(path.read_text(encoding="utf-8"), str(path), representation)
    return PayloadReport(results, strict)
