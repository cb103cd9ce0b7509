"""Payload codecs: bytes as a device sent them -> readings.

Two kinds live here. The FIWARE protocols (json.py, ultralight.py, this
package's modules) have ``decode(payload: bytes) -> list[dict[str, Any]]`` (a
list of measures, one dict per measure group); a payload without a measure is
a :class:`CodecError` with the reason. The LoRaWAN vendor models (one package
per vendor, one module per model: ``decentlab/dl_pm.py``) follow the LoRa
Alliance TS013 contract instead and are found by the catalogue
(agents.lorawan.catalog) under their id, ``<vendor>/<model>``. Each module has
a sibling ``<name>_vectors.json`` of input/output and input/error examples
that one parametrised test runs. The protocols by name are in agents.protocols
(the codec modules import this package, so it imports none of them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CodecError", "Decoder", "rename_reserved"]

Decoder = Callable[[bytes], list[dict[str, Any]]]

#: Measure keys NGSI-LD reserves, renamed as the FIWARE agents' convention does.
RESERVED_KEYS = {"id": "measure_id", "type": "measure_type"}


class CodecError(ValueError):
    """A payload the codec cannot read; the message says why."""


def rename_reserved(measure: dict[str, Any]) -> dict[str, Any]:
    """`id` and `type` would clash with the entity's own members: rename them."""
    if not RESERVED_KEYS.keys() & measure.keys():
        return measure
    return {RESERVED_KEYS.get(k, k): v for k, v in measure.items()}
