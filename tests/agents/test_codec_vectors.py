"""Every codec's vectors file (agents/codecs/**/*_vectors.json), one test per vector.

Two kinds of codec: the FIWARE protocols (json, ultralight: `decode(payload) ->
list of measure groups`, raising CodecError) and the LoRaWAN vendor models
(`decode_uplink(payload, fport) -> Decoded`, the TS013 contract, never raising).
A LoRaWAN vector has an `fport`; its downlink vectors (`downlinks`) go through
`encode_downlink`.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agents.codecs import CodecError

CODECS = Path(__file__).resolve().parents[2] / "agents" / "codecs"


def _files() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(CODECS.rglob("*_vectors.json"))]


def _vectors() -> list[Any]:
    return [pytest.param(doc["codec"], vector, id=f"{path.stem}:{vector['name']}")
            for path, doc in _files() for vector in doc["vectors"]]


def _downlinks() -> list[Any]:
    return [pytest.param(doc["codec"], vector, id=f"{path.stem}:{vector['name']}")
            for path, doc in _files() for vector in doc.get("downlinks", [])]


def same(actual: Any, expected: Any) -> bool:
    """Equal, floats within 1e-9 relative (a document prints what its own arithmetic gave)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
            same(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            same(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and math.isclose(
            actual, expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(actual == expected)


def test_every_codec_has_vectors() -> None:
    modules = {p.stem for p in CODECS.rglob("*.py") if p.stem != "__init__"}
    with_vectors = {p.stem.removesuffix("_vectors") for p in CODECS.rglob("*_vectors.json")}
    assert modules <= with_vectors, f"codecs without vectors: {sorted(modules - with_vectors)}"


def test_every_vendor_vector_names_its_source() -> None:
    for path, doc in _files():
        for vector in [*doc["vectors"], *doc.get("downlinks", [])]:
            if "fport" in vector or "command" in vector:
                assert vector.get("source") in doc["sources"], f"{path.name}: {vector['name']} has no known source"


@pytest.mark.parametrize(("codec", "vector"), _vectors())
def test_vector(codec: str, vector: dict[str, Any]) -> None:
    module = importlib.import_module(codec)
    payload = bytes.fromhex(vector["input_hex"]) if "input_hex" in vector else vector["input"].encode("utf-8")
    if "fport" in vector:
        decoded = module.decode_uplink(payload, vector["fport"])
        if "error" in vector:
            assert not decoded.data and len(decoded.errors) == 1, decoded
            assert vector["error"] in decoded.errors[0]
        else:
            assert not decoded.errors, decoded.errors
            assert same(decoded.to_json(), vector["output"]), decoded
        return
    if "error" in vector:
        with pytest.raises(CodecError) as info:
            module.decode(payload)
        assert vector["error"] in str(info.value)
    else:
        result = module.decode(payload)
        assert result == vector["output"]
        assert result, "a codec never returns an empty list"


@pytest.mark.parametrize(("codec", "vector"), _downlinks())
def test_downlink_vector(codec: str, vector: dict[str, Any]) -> None:
    encoded = importlib.import_module(codec).encode_downlink(vector["command"])
    if "error" in vector:
        assert encoded.errors and vector["error"] in encoded.errors[0] and not encoded.payload
    else:
        assert not encoded.errors, encoded.errors
        assert (encoded.fport, encoded.payload.hex()) == (vector["fport"], vector["output_hex"])
