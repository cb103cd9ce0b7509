"""The names of the NGSI-LD HTTP binding: the API root path, the media types, the JSON-LD Link relation.

Clause 6.3 of ETSI GS CIM 009 V1.9.1. One place for the broker, the
northbound clients, the agents' southbound answers and the probes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["API", "GEO_JSON", "JSON", "JSON_LD", "LINK_REL", "PROBLEM_JSON"]

API: Final = "/ngsi-ld/v1"
"""The root of every NGSI-LD resource path."""

JSON: Final = "application/json"
JSON_LD: Final = "application/ld+json"
GEO_JSON: Final = "application/geo+json"
PROBLEM_JSON: Final = "application/problem+json"

LINK_REL: Final = "http://www.w3.org/ns/json-ld#context"
"""The `rel` of the Link header naming the @context (clause 6.3.5)."""
